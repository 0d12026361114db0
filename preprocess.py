"""Corpus + vocabulary + target -> a dataset directory for pretrain.py.

    python preprocess.py --corpus_path data/corpora/peoples_daily.txt --config_path models/bert/tiny.yaml \\
        --vocab_path models/google_zh_vocab.txt --dataset_path data/datasets/pd_bert \\
        --seq_length 128 --processes_num 2

The processor defaults to the config's targets (mlm+nsp -> bert, mlm+sop -> albert, mlm -> mlm,
lm -> lm, bilm -> bilm, cls -> cls). corpora/README.md describes the corpus layouts.
--dataset_path is a directory of its own: a dataset written by preprocess.py there is replaced,
anything else is refused.
"""
from __future__ import annotations

import argparse
import sys

from uer.config import Config, ConfigError, TokenizerConfig, load_config
from uer.data.corpus import CorpusFormatError
from uer.data.masking import MaskingConfig
from uer.data.preprocessing import PreprocessOptions, preprocess
from uer.data.processors import PROCESSORS, processor_for_targets
from uer.data.tsv import TsvError
from uer.tokenizers import TOKENIZERS
from uer.utils.cli import UsageError, fraction, input_file, positive_int, run_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus_path", required=True)
    p.add_argument("--dataset_path", required=True, help="output directory (a new one, or a dataset written by preprocess.py)")
    p.add_argument("--config_path", help="model config: its target picks the processor, its tokenizer section the tokenizer")
    p.add_argument("--data_processor", choices=PROCESSORS.names(), help="default: from the config's targets")
    p.add_argument("--tokenizer", choices=TOKENIZERS.names(), help="default: the config's")
    p.add_argument("--vocab_path")
    p.add_argument("--spm_model_path")
    p.add_argument("--seq_length", type=positive_int, default=128)
    p.add_argument("--processes_num", type=positive_int, default=1)
    p.add_argument("--dup_factor", type=positive_int, default=1, help="instances made from each document, each with fresh randomness")
    p.add_argument("--short_seq_prob", type=fraction, default=0.1, help="bert/albert: chance of a shorter target length")
    masking = p.add_mutually_exclusive_group()
    masking.add_argument("--dynamic_masking", dest="dynamic_masking", action="store_true", default=True,
                         help="masks drawn anew for every batch in pretrain.py (default)")
    masking.add_argument("--static_masking", dest="dynamic_masking", action="store_false",
                         help="masks drawn here, once per --dup_factor copy")
    strategy = p.add_mutually_exclusive_group()
    strategy.add_argument("--whole_word_masking", action="store_true",
                          help="mask whole words (Chinese words from the jieba segmenter)")
    strategy.add_argument("--span_masking", action="store_true", help="mask spans of whole words (SpanBERT)")
    p.add_argument("--span_geo_prob", type=fraction, default=0.2)
    p.add_argument("--span_max_length", type=positive_int, default=10, help="words in a span at most")
    p.add_argument("--mask_prob", type=fraction, default=0.15)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip_malformed", action="store_true", help="cls: skip malformed TSV rows and count them (default: error)")
    p.add_argument("--no_progress", action="store_true")
    return p


def tokenizer_config(config: Config | None, name: str | None) -> TokenizerConfig:
    """The config's tokenizer section, or the default; ``--tokenizer`` of the other kind drops the
    config's file of the old kind (a vocabulary for sentencepiece, a model for the others)."""
    tokenizer = config.tokenizer if config is not None else TokenizerConfig()
    if name is None or name == tokenizer.name:
        return tokenizer
    # a plain TokenizerConfig: the other tokenizer's own options take their defaults
    if name == "sentencepiece":
        return TokenizerConfig(name=name, vocab_path=None, spm_model_path=tokenizer.spm_model_path)
    return TokenizerConfig(name=name, vocab_path=tokenizer.vocab_path, spm_model_path=None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        input_file(args.corpus_path, "--corpus_path")
        if args.vocab_path is not None:
            input_file(args.vocab_path, "--vocab_path")
        if args.spm_model_path is not None:
            input_file(args.spm_model_path, "--spm_model_path")
        config = load_config(input_file(args.config_path, "--config_path")) if args.config_path else None
        if args.data_processor:
            processor = args.data_processor
        elif config is not None:
            processor = processor_for_targets([s.name for s in config.target.components])
        else:
            raise UsageError("give --config_path (its targets pick the processor) or --data_processor")
        if config is not None:
            limit = config.position_limit
            if limit is not None and args.seq_length > limit:
                raise UsageError(f"--seq_length {args.seq_length} is longer than the position table of "
                                 f"{args.config_path} (max_seq_length {limit}); pass at most {limit}")
        strategy = "whole_word" if args.whole_word_masking else "span" if args.span_masking else "token"
        options = PreprocessOptions(
            corpus_path=args.corpus_path,
            dataset_path=args.dataset_path,
            processor=processor,
            tokenizer=tokenizer_config(config, args.tokenizer),
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
            skip_malformed=args.skip_malformed,
        )
        preprocess(options)
        return 0

    # ValueError: the vocabulary's and the tokenizers' own checks (they name the file and line)
    return run_main("preprocess.py", body, (ConfigError, CorpusFormatError, TsvError, FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
