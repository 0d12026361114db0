"""The same app as a Ray Serve deployment: replicas on one machine or a cluster, one HTTP route.

    pip install "uer[ray]"            # or: pip install "ray[serve]"
    python -m uer.serve.ray_deployment out/fastbert/model.pt --replicas 2 --port 8000

or from Python::

    from ray import serve
    from uer.serve import ServeConfig, ray_application
    serve.run(ray_application(ServeConfig("out/fastbert/model.pt"), replicas=2))

Each replica builds the app (and loads the model) itself from the config, through Ray Serve's
ingress builder, so nothing but the small config is shipped to the replicas. The app is
stateless between requests: any replica may answer any request.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from uer.serve.app import ServeConfig, create_app


def ray_application(config: ServeConfig, replicas: int = 2, cpus_per_replica: float = 1.0):
    """A bound Ray Serve application of ``replicas`` copies of :func:`uer.serve.app.create_app`."""
    from ray import serve

    fields = dataclasses.asdict(config)

    def build():  # Ray Serve calls a builder without arguments on each replica
        return create_app(ServeConfig(**fields))

    @serve.deployment(name="uer", num_replicas=replicas, ray_actor_options={"num_cpus": cpus_per_replica})
    @serve.ingress(build)
    class Uer:
        pass

    return Uer.bind()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m uer.serve.ray_deployment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_path")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--cpus_per_replica", type=float, default=1.0)
    p.add_argument("--speed", type=float, default=None)
    p.add_argument("--max_batch", type=int, default=32)
    args = p.parse_args(argv)
    import ray
    from ray import serve

    ray.init(num_cpus=max(1, int(args.replicas * args.cpus_per_replica) + 1), include_dashboard=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    config = ServeConfig(args.model_path, speed=args.speed, max_batch=args.max_batch, threads=max(1, int(args.cpus_per_replica)))
    serve.run(ray_application(config, args.replicas, args.cpus_per_replica), route_prefix="/")
    print(f"uer on Ray Serve: {args.replicas} replicas at http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
