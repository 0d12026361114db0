"""``python -m uer list`` | ``python -m uer summary CONFIG [--vocab_size N] [--seq_length T]``."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from uer.config import ConfigError, load_config
    from uer.embeddings import EMBEDDINGS
    from uer.encoders import ENCODERS
    from uer.model_builder import build_model
    from uer.subencoders import SUBENCODERS
    from uer.summary import summarize
    from uer.targets import TARGETS

    parser = argparse.ArgumentParser(prog="python -m uer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every registered embedding, encoder, subencoder and target")
    summary = sub.add_parser("summary", help="assemble a config and print modules, parameters and FLOPs")
    summary.add_argument("config_path")
    summary.add_argument("--vocab_size", type=int, default=None, help="default: the config's tokenizer vocabulary")
    summary.add_argument("--labels_num", type=int, default=2)
    summary.add_argument("--seq_length", type=int, default=128)
    summary.add_argument("overrides", nargs="*", help="section.key=value, e.g. encoder.layers_num=2")
    args, rest = parser.parse_known_args(argv)  # overrides may follow the options
    if rest:
        if args.command != "summary" or any(r.startswith("-") for r in rest):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        args.overrides = [*args.overrides, *rest]

    if args.command == "list":
        for registry in (EMBEDDINGS, ENCODERS, SUBENCODERS, TARGETS):
            print(f"{registry.kind}s:")
            for name in registry.names():
                entry = registry.entry(name)
                doc = (entry.cls.__doc__ or "").strip().splitlines()
                print(f"  {name:<20} {doc[0] if doc else entry.cls.__name__}")
        return 0
    try:
        config = load_config(args.config_path, args.overrides)
        if args.vocab_size is None:  # the config's own vocabulary
            from uer.tokenizers import build_tokenizer

            sizes = {"vocab_tokens": build_tokenizer(config.tokenizer).vocab.tokens}
        else:  # a subencoder needs token strings: stand-ins of the requested count
            sizes = {"vocab_size": args.vocab_size}
            if config.subencoder is not None:
                sizes["vocab_tokens"] = [f"t{i}" for i in range(args.vocab_size)]
        model = build_model(config, labels_num=args.labels_num, **sizes)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summarize(model, args.seq_length))
    return 0


if __name__ == "__main__":
    sys.exit(main())
