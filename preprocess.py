"""Corpus + vocabulary + target -> a dataset directory for pretrain.py.

    python preprocess.py --corpus_path data/corpora/peoples_daily.txt --config_path models/bert/tiny.yaml \\
        --vocab_path models/google_zh_vocab.txt --dataset_path data/datasets/pd_bert \\
        --seq_length 128 --processes_num 2

The processor defaults to the config's targets (mlm+nsp -> bert, mlm+sop -> albert, mlm -> mlm,
lm -> lm, bilm -> bilm, cls -> cls). corpora/README.md describes the corpus layouts.
"""
from __future__ import annotations

import argparse
import sys

from uer.config import ConfigError, TokenizerConfig, load_config
from uer.data.corpus import CorpusFormatError
from uer.data.masking import MaskingConfig
from uer.data.preprocessing import PreprocessOptions, preprocess
from uer.data.processors import PROCESSORS, processor_for_targets


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus_path", required=True)
    p.add_argument("--dataset_path", required=True, help="output directory")
    p.add_argument("--config_path", help="model config: its target picks the processor, its tokenizer section the tokenizer")
    p.add_argument("--data_processor", choices=PROCESSORS, help="default: from the config's targets")
    p.add_argument("--tokenizer", choices=("bert", "char", "space", "sentencepiece"), help="default: the config's")
    p.add_argument("--vocab_path")
    p.add_argument("--spm_model_path")
    p.add_argument("--seq_length", type=int, default=128)
    p.add_argument("--processes_num", type=int, default=1)
    p.add_argument("--dup_factor", type=int, default=1, help="instances made from each document, each with fresh randomness")
    p.add_argument("--short_seq_prob", type=float, default=0.1, help="bert/albert: chance of a shorter target length")
    masking = p.add_mutually_exclusive_group()
    masking.add_argument("--dynamic_masking", dest="dynamic_masking", action="store_true", default=True,
                         help="masks drawn anew for every batch in pretrain.py (default)")
    masking.add_argument("--static_masking", dest="dynamic_masking", action="store_false",
                         help="masks drawn here, once per --dup_factor copy")
    strategy = p.add_mutually_exclusive_group()
    strategy.add_argument("--whole_word_masking", action="store_true",
                          help="mask whole words (Chinese words from the jieba segmenter)")
    strategy.add_argument("--span_masking", action="store_true", help="mask spans of whole words (SpanBERT)")
    p.add_argument("--span_geo_prob", type=float, default=0.2)
    p.add_argument("--span_max_length", type=int, default=10)
    p.add_argument("--mask_prob", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no_progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config_path) if args.config_path else None
        if args.data_processor:
            processor = args.data_processor
        elif config is not None:
            processor = processor_for_targets([s.name for s in config.target.components])
        else:
            raise ConfigError("give --config_path (its targets pick the processor) or --data_processor")
        tokenizer = config.tokenizer if config is not None else TokenizerConfig()
        if args.tokenizer and args.tokenizer != tokenizer.name:  # another tokenizer: its defaults, the same files
            tokenizer = TokenizerConfig(name=args.tokenizer, vocab_path=tokenizer.vocab_path, spm_model_path=tokenizer.spm_model_path)
        strategy = "whole_word" if args.whole_word_masking else "span" if args.span_masking else "token"
        options = PreprocessOptions(
            corpus_path=args.corpus_path,
            dataset_path=args.dataset_path,
            processor=processor,
            tokenizer=tokenizer,
            vocab_path=args.vocab_path,
            spm_model_path=args.spm_model_path,
            seq_length=args.seq_length,
            processes_num=args.processes_num,
            dup_factor=args.dup_factor,
            short_seq_prob=args.short_seq_prob,
            dynamic_masking=args.dynamic_masking,
            masking=MaskingConfig(strategy=strategy, prob=args.mask_prob, span_geo_prob=args.span_geo_prob,
                                  span_max_length=args.span_max_length),
            seed=args.seed,
            progress=not args.no_progress,
        )
        preprocess(options)
    except (ConfigError, CorpusFormatError, FileNotFoundError, ValueError) as exc:
        print(f"preprocess.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
