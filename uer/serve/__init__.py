"""Serving a trained model over HTTP: ``python -m uer serve MODEL``.

    app.py             the FastAPI app: /v1/predict, /healthz, /metrics, /docs; request checks; the Service
    engine.py          one worker thread owns the model: continuous (per-layer) or plain batching across requests
    controller.py      the speed that follows the load under a latency target
    cli.py             the command line (uvicorn, one or more worker processes); options.py its closed choices
    ray_deployment.py  the same app as a Ray Serve deployment (optional extra: ``pip install "uer[ray]"``)

Importing this package imports neither torch nor FastAPI.
"""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:  # lazy: ``uer.serve.create_app`` without importing the web stack up front
    if name in ("create_app", "ServeConfig"):
        from uer.serve import app

        return getattr(app, name)
    if name == "ray_application":
        from uer.serve.ray_deployment import ray_application

        return ray_application
    raise AttributeError(f"module 'uer.serve' has no attribute {name!r}")


__all__ = ["create_app", "ServeConfig", "ray_application"]
