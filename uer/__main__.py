"""``python -m uer list`` | ``python -m uer summary CONFIG [--vocab_size N] [--seq_length T] [section.key=value ...]``
| ``python -m uer export MODEL --format onnx OUT/ [--quantize int8]``
| ``python -m uer predict MODEL --input FILE [--output FILE]`` | ``python -m uer serve MODEL [--port N]``."""
from __future__ import annotations

import argparse
import importlib
import sys

from uer.utils.cli import UsageError, positive_int, run_main

# What ``list`` shows: (heading, "module:REGISTRY"). Adding a registry to the listing is one line here.
LISTED = (
    ("embeddings", "uer.embeddings:EMBEDDINGS"),
    ("encoders", "uer.encoders:ENCODERS"),
    ("subencoders", "uer.subencoders:SUBENCODERS"),
    ("targets", "uer.targets:TARGETS"),
    ("tokenizers", "uer.tokenizers:TOKENIZERS"),
    ("processors", "uer.data.processors:PROCESSORS"),
    ("exit policies", "uer.exit.policies:POLICIES"),
)


def _first_line(obj: object) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    return doc[0] if doc else getattr(obj, "__name__", "")


def describe(registry: object) -> list[tuple[str, str]]:
    """``(name, first docstring line of its class)`` for a :class:`~uer.registry.Registry`; a plain
    collection of names (what a family that has no registry yet offers) lists the names alone."""
    from uer.registry import Registry

    if isinstance(registry, Registry):
        return [(name, _first_line(registry.cls(name))) for name in registry.names()]
    return [(str(name), "") for name in registry]


def list_registries(listed=LISTED) -> str:
    lines = []
    for heading, path in listed:
        module, _, attr = path.partition(":")
        registry = getattr(importlib.import_module(module), attr)
        lines.append(f"{heading}:")
        lines += [f"  {name:<20} {doc}".rstrip() for name, doc in describe(registry)]
    return "\n".join(lines)


def summary(args: argparse.Namespace) -> int:
    from uer.config import ConfigError, load_config
    from uer.model_builder import build_model
    from uer.summary import summarize

    try:
        config = load_config(args.config_path, args.overrides)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if args.vocab_size is None:  # the config's own vocabulary
        from uer.tokenizers import build_tokenizer

        try:
            sizes = {"vocab_tokens": build_tokenizer(config.tokenizer).vocab.tokens}
        except (ValueError, FileNotFoundError) as exc:
            raise UsageError(f"{config.source}: {exc} (or give --vocab_size)") from None
    else:  # a subencoder needs token strings: stand-ins of the requested count
        sizes = {"vocab_size": args.vocab_size}
        if config.subencoder is not None:
            sizes["vocab_tokens"] = [f"t{i}" for i in range(args.vocab_size)]
    try:
        model = build_model(config, labels_num=args.labels_num, **sizes)
    except ValueError as exc:  # a size or a combination the components refuse
        raise UsageError(f"{config.source}: {exc}") from None
    longest = model.embedding.max_seq_length
    if longest is not None and args.seq_length > longest:
        raise UsageError(f"--seq_length {args.seq_length} is longer than the {longest} positions the embedding of {config.source} has")
    print(summarize(model, args.seq_length))
    return 0


def export(args: argparse.Namespace) -> int:
    from uer.runtime.export import ExportError, earlier_export, export_onnx
    from uer.utils.cli import OutputLock, input_file, on_interrupt, output_dir

    if args.int8_for == "every_cpu" and args.quantize != "int8":  # before OUT is made
        raise UsageError("--int8_for every_cpu applies to --quantize int8 only")
    model, out = input_file(args.model_path, "MODEL"), output_dir(args.out_dir, "OUT")
    scheme = None
    if args.int8_for == "every_cpu":
        from uer.runtime.cpu import PORTABLE as scheme
    on_interrupt(f"interrupted: {args.out_dir} holds no complete export (its manifest.json is written last); "
                 "run the same command again to redo it")
    try:
        earlier_export(out)  # someone else's folder is refused before the lock file is made beside it
        with OutputLock(out, "OUT"):  # a second export into this folder fails at once
            manifest = export_onnx(model, out, quantize=args.quantize, int8_scheme=scheme)
    except ExportError as exc:
        raise UsageError(str(exc)) from None
    files = [*manifest["steps"], manifest["full"], manifest["vocab"], "manifest.json"]
    print(f"exported {manifest['layers_num']} steps + the full model ({manifest['quantize'] or 'fp32'}) to "
          f"{args.out_dir}: {', '.join(files)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every registered embedding, encoder, subencoder, target, tokenizer and processor")
    p = sub.add_parser("summary", help="assemble a config and print modules, parameters and FLOPs")
    p.add_argument("config_path")
    p.add_argument("--vocab_size", type=positive_int, default=None, help="default: the config's tokenizer vocabulary")
    p.add_argument("--labels_num", type=positive_int, default=2)
    p.add_argument("--seq_length", type=positive_int, default=128)
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. encoder.layers_num=2")
    e = sub.add_parser("export", help="a model trained by run_fastbert.py or run_ner.py as ONNX files (steps, full model, manifest)")
    e.add_argument("model_path", help="the model.pt run_fastbert.py or run_ner.py wrote (its vocabulary beside it)")
    e.add_argument("out_dir", help="folder for the .onnx files and manifest.json")
    e.add_argument("--format", choices=("onnx",), default="onnx")
    e.add_argument("--quantize", choices=("int8",), help="int8 weights (ONNX Runtime dynamic quantization)")
    e.add_argument("--int8_for", choices=("this_cpu", "every_cpu"), default="this_cpu",
                   help="this_cpu: the scheme chosen for this CPU's int8 kernels (8-bit weights with VNNI/AMX/ARM, "
                        "7-bit without); every_cpu: 7-bit weights, exact on any CPU (export on AMX, serve on AVX2)")
    from uer import predict as predict_cli  # neither imports torch until the command runs
    from uer.serve import cli as serve_cli

    predict_cli.add_arguments(sub.add_parser("predict", help="a trained model on unlabelled text -> JSON Lines"))
    serve_cli.add_arguments(sub.add_parser("serve", help="a trained model as an HTTP service (batching across requests)"))
    from uer import embed as embed_cli, vocab_tools
    from uer.convert import cli as convert_cli

    convert_cli.add_arguments(sub.add_parser("convert", help="HuggingFace <-> uer: hf2uer HF_DIR OUT.pt | uer2hf MODEL.pt HF_DIR"))
    vocab_tools.add_arguments(sub.add_parser("vocab", help="build a vocabulary from a corpus | extend a model's vocabulary"))
    embed_cli.add_arguments(sub.add_parser("embed", help="sentence vectors of a text file -> .npy"))
    try:
        args, rest = parser.parse_known_args(argv)  # overrides may follow the options
        if rest:
            if args.command != "summary" or any(r.startswith("-") for r in rest):
                parser.error(f"unrecognized arguments: {' '.join(rest)}")
            args.overrides = [*args.overrides, *rest]
    except SystemExit as exc:  # argparse has printed usage and the error (or --help)
        return int(exc.code or 0)

    def body() -> int:
        if args.command == "list":
            print(list_registries())
            return 0
        if args.command == "predict":
            return predict_cli.command(args)
        if args.command == "serve":
            return serve_cli.command(args)
        if args.command == "export":
            return export(args)
        if args.command == "convert":
            return convert_cli.command(args)
        if args.command == "vocab":
            return vocab_tools.command(args)
        if args.command == "embed":
            return embed_cli.command(args)
        return summary(args)

    from uer.checkpoint import CheckpointError

    return run_main("python -m uer", body, extra_errors=(CheckpointError,))


if __name__ == "__main__":
    sys.exit(main())
