"""``python -m uer serve MODEL``: the HTTP service on uvicorn (see :mod:`uer.serve.app`).

The model is loaded before the port opens, so a model that cannot be loaded is one line and
exit 2, and a client never meets a half-started server. SIGTERM (or Ctrl-C) stops accepting,
lets the requests in flight finish, and exits 0: uvicorn's graceful shutdown, then the engine's.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    from uer.predict import add_exit_plan_flag
    from uer.serve.options import BATCHINGS
    from uer.utils.cli import fraction, non_negative_int, positive_float, positive_int

    p.add_argument("model_path", metavar="MODEL", help="a model.pt written by run_fastbert.py or run_ner.py")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=non_negative_int, default=8000, help="default 8000; 0 picks a free one")
    p.add_argument("--speed", type=fraction, default=None,
                   help="the speed of requests that name none (default 0, the full model); the floor with --latency_slo_ms")
    p.add_argument("--max_speed", type=fraction, default=None, help="the ceiling with --latency_slo_ms (default 1)")
    p.add_argument("--latency_slo_ms", type=positive_float, default=None,
                   help="a p90 latency target: the speed rises when it is threatened and falls when the load does")
    p.add_argument("--policy", default=None, help="the exit policy of requests that name none (classifiers; default entropy)")
    p.add_argument("--batching", choices=BATCHINGS, default="continuous",
                   help="continuous: across requests at layer granularity (classifiers); "
                        "plain: collect up to --max_batch rows or --max_wait_ms, run to completion")
    p.add_argument("--max_batch", type=positive_int, default=32, help="rows in flight at once (default 32)")
    p.add_argument("--max_wait_ms", type=positive_float, default=5.0, help="plain batching: the wait for more rows (default 5)")
    p.add_argument("--max_texts", type=positive_int, default=256, help="texts per request (default 256)")
    p.add_argument("--max_body_bytes", type=positive_int, default=1 << 20, help="request body size (default 1 MiB)")
    p.add_argument("--workers", type=positive_int, default=1, help="uvicorn worker processes, each with its own model")
    p.add_argument("--runtime", default="auto", help="inference runtime for plain batching (uer.runtime); "
                                                     "continuous batching runs the model's layers, uer.fused's with 'fused'")
    p.add_argument("--window", type=non_negative_int, default=None, help="taggers: token exit's window (default: the run's)")
    add_exit_plan_flag(p)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads per worker (default: torch's, divided among --workers)")


def config_from(args: argparse.Namespace):
    from uer.serve.app import ServeConfig

    threads = args.threads
    if threads is None and args.workers > 1:  # N workers x all cores each would oversubscribe the CPU
        threads = max(1, (os.cpu_count() or 1) // args.workers)
    return ServeConfig(
        model_path=str(args.model_path), speed=args.speed, max_speed=args.max_speed, policy=args.policy,
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, latency_slo_ms=args.latency_slo_ms,
        batching=args.batching, max_texts=args.max_texts, max_body_bytes=args.max_body_bytes,
        runtime=args.runtime, window=args.window, threads=threads, exit_plan=args.exit_plan)


def command(args: argparse.Namespace) -> int:
    import uvicorn

    from uer.checkpoint import CheckpointError
    from uer.serve.app import CONFIG_ENV, ServeConfigError, config_to_env, create_app
    from uer.utils.cli import UsageError, input_file

    input_file(args.model_path, "MODEL")
    try:
        config = config_from(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:  # loaded here, before the port opens; each worker process loads its own copy
        app = create_app(config)
    except (CheckpointError, ServeConfigError) as exc:
        raise UsageError(str(exc)) from None
    except (ValueError, OSError) as exc:
        raise UsageError(f"MODEL {args.model_path}: {exc}") from None
    service = app.state.service
    where = f"http://{args.host}:{args.port}"
    print(f"uer serve: {args.model_path} ({service.describe()}) on {where} "
          f"({args.workers} worker{'s' if args.workers > 1 else ''}); docs at {where}/docs", file=sys.stderr, flush=True)
    # uvicorn handles SIGTERM (stop accepting, finish what is in flight) and then raises it again
    # against the handler it found: a handler that ignores it makes a drained shutdown exit 0
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=None)
    else:  # uvicorn's own supervisor: each worker builds the app from the factory
        del app, service
        os.environ[CONFIG_ENV] = config_to_env(config)
        uvicorn.run("uer.serve.app:app_from_env", factory=True, workers=args.workers, host=args.host,
                    port=args.port, log_level="warning")
    return 0
