"""The HTTP service: ``POST /v1/predict``, ``GET /healthz``, ``GET /metrics``, ``/docs``.

    app = create_app(ServeConfig("out/fastbert/model.pt", latency_slo_ms=50))   # an ASGI app
    uvicorn.run(app)                                                             # or: python -m uer serve MODEL

One worker thread owns the model (``uer.serve.engine``): requests hand it their rows and await
them, so concurrent requests share batches. The app keeps no state a client depends on between
requests, so any number of copies can serve behind a load balancer (``--workers``, Ray Serve).

Every mistake in a request is a 4xx whose body is one line, ``{"error": "..."}``; the server
goes on serving. A client that disconnects before its answer has its rows dropped from the engine.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field  # this module is imported only to serve: the web stack is there
from starlette.requests import Request

from uer.exit.policies import resolve
from uer.serve.options import BATCHINGS
from uer.predict import CLASSIFIER, ClassifierModel, Predictor, load_predictor
from uer.serve.controller import FixedSpeed, SpeedController
from uer.serve.engine import ContinuousEngine, Engine, EngineHooks, LayerStack, PlainEngine

log = logging.getLogger("uer.serve")
CONFIG_ENV = "UER_SERVE_CONFIG"  # how --workers hands the configuration to each worker process


@dataclass(frozen=True)
class ServeConfig:
    """What ``python -m uer serve`` takes (JSON-serialisable: it travels to worker processes)."""

    model_path: str
    speed: float | None = None  # the floor; None: the speed the training run chose (else 0, the full model)
    max_speed: float | None = None  # the ceiling with a latency target; None: 1
    policy: str | None = None  # None: the model's default exit policy
    max_batch: int = 32
    max_wait_ms: float = 5.0  # plain batching: how long the first request of a batch waits for more
    latency_slo_ms: float | None = None  # with a target, the speed follows the load
    batching: str = "continuous"
    max_texts: int = 256
    max_body_bytes: int = 1 << 20
    runtime: str = "auto"
    window: int | None = None  # taggers: token exit's window; None: the run's
    exit_plan: str = "stored"  # classifiers: where early exit runs (FastBertClassifier.load's exit_plan)
    threads: int | None = None  # torch intra-op threads in this process; None leaves torch's default

    def __post_init__(self) -> None:
        if self.batching not in BATCHINGS:
            raise ValueError(f"batching {self.batching!r}: expected one of {', '.join(BATCHINGS)}")
        for name in ("speed", "max_speed"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.speed is not None and self.max_speed is not None and self.speed > self.max_speed:
            raise ValueError(f"--speed {self.speed} is above --max_speed {self.max_speed}")
        for name in ("max_batch", "max_texts", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

class ServeConfigError(ValueError):
    """Settings that cannot serve this model (an unknown policy, a floor above the ceiling ...)."""


class ApiError(Exception):
    """A request the server refuses: ``status`` and a one-line message for ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ==============================================================================================
# the request


class PredictRequest(BaseModel):  # for the OpenAPI page; parse_request reads the body itself (one-line errors)
    texts: list[str] = Field(description="the texts to read (at most --max_texts)")
    texts_b: list[str] | None = Field(None, description="pair models: the second text of each pair")
    speed: float | None = Field(None, ge=0, le=1, description="0 = the full model; default: the server's")
    policy: str | None = Field(None, description="the exit policy; default: the server's")


class PredictResponse(BaseModel):
    predictions: list[dict[str, Any]] = Field(description="one per text, in order: classifiers "
                                              "{label, probabilities, exit_layer}; taggers {entities, mean_exit_layer}")
    speed: float = Field(description="the speed these texts ran at")


class ErrorResponse(BaseModel):
    error: str


KEYS = ("texts", "texts_b", "speed", "policy")


@dataclass
class Asked:
    items: list[str | tuple[str, str]]
    speed: float | None
    policy: str | None


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list):
        raise ApiError(422, f"'{name}' must be a list of strings, got {type(value).__name__}")
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise ApiError(422, f"{name}[{i}] is {type(text).__name__}, expected a string")
        if not text.strip():
            raise ApiError(422, f"{name}[{i}] is empty (or only whitespace): there is nothing to read")
    return value


def parse_request(body: bytes, model: Predictor, max_texts: int) -> Asked:
    """The body of ``POST /v1/predict`` -> what to run, or an :class:`ApiError` saying what is wrong."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, f"the body must be a JSON object with a 'texts' list, got {type(payload).__name__}")
    unknown = sorted(set(payload) - set(KEYS))
    if unknown:
        raise ApiError(422, f"unknown key {unknown[0]!r}; valid keys: {', '.join(KEYS)}")
    if "texts" not in payload:
        raise ApiError(422, "'texts' is missing: send {\"texts\": [\"...\"]}")
    texts = payload["texts"]
    if isinstance(texts, list) and len(texts) > max_texts:
        raise ApiError(413, f"'texts' holds {len(texts)} texts, more than the server's limit of {max_texts}")
    texts = _strings(texts, "texts")
    if not texts:
        raise ApiError(422, "'texts' is empty: send at least one text")
    items: list[str | tuple[str, str]] = list(texts)
    if payload.get("texts_b") is not None:
        if not model.pair:
            raise ApiError(422, "'texts_b' given, but this model reads single texts")
        texts_b = _strings(payload["texts_b"], "texts_b")
        if len(texts_b) != len(texts):
            raise ApiError(422, f"'texts_b' holds {len(texts_b)} texts, 'texts' {len(texts)}: they pair up one to one")
        items = list(zip(texts, texts_b))
    elif model.pair:
        raise ApiError(422, "this model classifies (text_a, text_b) pairs: send 'texts_b' beside 'texts'")
    speed = payload.get("speed")
    if speed is not None:
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not math.isfinite(speed) \
                or not 0.0 <= speed <= 1.0:
            raise ApiError(422, f"'speed' must be a number in [0, 1], got {json.dumps(speed)}")
        speed = float(speed)
    policy = payload.get("policy")
    if policy is not None:
        if not model.policies:
            raise ApiError(422, f"'policy' given, but a {model.kind} has no exit policy to choose")
        if not isinstance(policy, str) or policy not in model.policies:
            raise ApiError(422, f"unknown policy {json.dumps(policy)}; valid policies: {', '.join(model.policies)}")
    return Asked(items, speed, policy)


async def read_body(request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (announced or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body has {declared} bytes, more than the server's limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body passes the server's limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _disconnected(request) -> None:
    """Returns when the client goes away (after the body, the next ASGI message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


# ==============================================================================================
# the service: model, engine, speed, metrics


class Metrics:
    """Prometheus metrics in a registry of the service's own (several apps may share a process)."""

    def __init__(self, service: "Service") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.latency = Histogram("uer_request_latency_seconds", "Time from a request's arrival to its answer",
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10), registry=r)
        layers = service.layers_num
        self.exit_layer = Histogram("uer_exit_layer", "Layer at which a text left (taggers: mean over its characters)",
                                    buckets=tuple(range(1, layers + 1)), registry=r)
        self.batch = Histogram("uer_batch_rows", "Rows in one model call (one layer, or one plain batch)",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.requests = Counter("uer_requests", "Requests answered, by HTTP status", ["status"], registry=r)
        self.dropped = Counter("uer_rows_dropped", "Rows dropped because their client went away", registry=r)
        queue = Gauge("uer_queue_rows", "Rows waiting to start", registry=r)
        queue.set_function(service.engine.queued_rows)
        flight = Gauge("uer_in_flight_rows", "Rows inside the model", registry=r)
        flight.set_function(service.engine.in_flight)
        speed = Gauge("uer_speed", "Speed given to requests that do not name one", registry=r)
        speed.set_function(lambda: service.controller.speed)


class Service:
    """A loaded model with its engine, speed controller and metrics; ``create_app`` serves it."""

    def __init__(self, config: ServeConfig, model: Predictor | None = None) -> None:
        if config.threads is not None:
            import torch

            torch.set_num_threads(config.threads)
        self.config = config
        if model is None:
            model = load_predictor(config.model_path, config.runtime, config.window, config.exit_plan)
        self.model = model
        if config.policy is not None and config.policy not in self.model.policies:
            raise ServeConfigError(f"--policy {config.policy!r}: valid policies: {', '.join(self.model.policies)}")
        try:  # what the run stored stands in for what the flags leave out (a policy without a speed may be refused)
            self.floor, self.default_rule = self.model.settings(config.speed, config.policy)
        except ValueError as exc:
            raise ServeConfigError(f"--policy {config.policy}: {exc}") from None
        if config.latency_slo_ms is None:
            self.ceiling = self.floor
        else:
            self.ceiling = 1.0 if config.max_speed is None else config.max_speed
            if self.floor > self.ceiling:
                raise ServeConfigError(f"the speed {self.floor:g} (--speed, or the run's) is above --max_speed {self.ceiling:g}")
        # per-layer batching reads softmax branches: single-label classifiers (the others batch plainly)
        continuous = (config.batching == "continuous" and isinstance(self.model, ClassifierModel)
                      and self.model.task == "classification")
        self.batching = "continuous" if continuous else "plain"
        self.layers_num = self.model.layers_num
        self.engine = self._engine(continuous)
        self.metrics = Metrics(self)
        if config.latency_slo_ms is not None:
            self.controller = SpeedController(self.floor, self.ceiling, config.latency_slo_ms / 1000.0, config.max_batch)
        else:
            self.controller = FixedSpeed(self.floor)

    def _engine(self, continuous: bool) -> Engine:
        hooks = EngineHooks(batch=lambda n: self.metrics.batch.observe(n),
                            exit_layer=lambda layer: self.metrics.exit_layer.observe(layer),
                            dropped=lambda n: self.metrics.dropped.inc(n))
        cfg = self.config
        if continuous:
            clf = self.model.clf
            # F.linear unless --runtime fused: per-layer pools hand the linears a new row count at
            # almost every call, and oneDNN's packed linears build a primitive per new shape (the
            # token-exit runner measured 792 against 377 us per linear over random row counts; here
            # p99 17.7 against 7.5 ms in-process at 60 requests/s on the test model)
            stack = LayerStack(self.model.network, fused=cfg.runtime == "fused")
            return ContinuousEngine(stack, lambda items: _encode(clf, items), clf.tokenizer.vocab.pad_id,
                                    cfg.max_batch, hooks, full_depth=lambda rule, speed: not clf.runner.plan(speed, rule).step)
        model = self.model
        exit_key = "exit_layer" if model.kind == CLASSIFIER else "mean_exit_layer"
        return PlainEngine(lambda items, speed, policy: model.predict(items, speed, policy, cfg.max_batch),
                           cfg.max_batch, cfg.max_wait_ms, hooks, exit_of=lambda result: result[exit_key] or 0)

    def answers(self, results: list[Any]) -> list[dict[str, Any]]:
        if self.batching == "continuous":
            return [self.model.result(probs, layer) for probs, layer in results]
        return results

    def describe(self) -> str:
        speed = f"speed {self.floor:g}"
        if self.config.latency_slo_ms is not None:
            speed = f"speed {self.floor:g}..{self.ceiling:g} for p90 <= {self.config.latency_slo_ms:g} ms"
        return f"{self.model.kind}, {self.batching} batching (max {self.config.max_batch} rows), {speed}"


def _encode(clf, items):
    encoded = clf.encode(items)
    return encoded.ids, encoded.segs


# ==============================================================================================
# the app


def create_app(config: ServeConfig, model: Predictor | None = None):
    """The FastAPI app serving ``config.model_path`` (or an already loaded ``model``)."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    service = Service(config, model)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.engine.start()
        ticker = asyncio.create_task(_follow_load(service))
        try:
            yield
        finally:  # uvicorn has finished the requests in flight by now
            ticker.cancel()
            await asyncio.to_thread(service.engine.stop)

    app = FastAPI(title="uer", summary=f"{os.path.basename(config.model_path)}: {service.describe()}", lifespan=lifespan)
    app.state.service = service

    def error(status: int, message: str) -> JSONResponse:
        service.metrics.requests.labels(str(status)).inc()
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return error(exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request"}
        return error(422, f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first['msg']}")

    @app.post("/v1/predict", response_model=PredictResponse, responses={400: {"model": ErrorResponse},
              413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": PredictRequest.model_json_schema()}}}})
    async def predict(request: Request):
        """Predict every text; each answer is the one ``uer predict`` writes for it."""
        start = time.perf_counter()
        body = await read_body(request, config.max_body_bytes)
        asked = parse_request(body, service.model, config.max_texts)
        speed = asked.speed if asked.speed is not None else service.controller.speed
        policy = service.default_rule if asked.policy is None else resolve(asked.policy)
        try:
            job = service.engine.submit(asked.items, speed, policy)
        except RuntimeError as exc:
            raise ApiError(503, f"not serving: {exc}") from None
        answer = asyncio.wrap_future(job.future)
        gone = asyncio.ensure_future(_disconnected(request))
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():  # the client went away: its rows leave the engine, nobody is answered
            service.engine.cancel(job)
            answer.cancel()
            service.metrics.requests.labels("499").inc()
            return Response(status_code=499)
        gone.cancel()
        try:
            results = answer.result()
        except (TypeError, ValueError) as exc:  # what the predictor refused that the checks above let through
            raise ApiError(422, str(exc).splitlines()[0]) from None
        except Exception as exc:
            log.exception("predict failed")
            raise ApiError(500, f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        elapsed = time.perf_counter() - start
        service.metrics.latency.observe(elapsed)
        if asked.speed is None:  # only the server's own choices steer the speed
            service.controller.observe(elapsed)
        service.metrics.requests.labels("200").inc()
        return JSONResponse({"predictions": service.answers(results), "speed": speed})

    @app.get("/healthz")
    async def healthz():
        """200 once the model is loaded and its worker is alive."""
        if service.engine.error is not None:
            return JSONResponse({"error": f"the engine stopped: {service.engine.error}"}, status_code=503)
        return {"status": "ok", "model": config.model_path, "kind": service.model.kind, "batching": service.batching,
                "speed": service.controller.speed}

    @app.get("/metrics")
    async def metrics():
        """Prometheus text format."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _follow_load(service: Service) -> None:
    """Lets the controller look at the queue every interval, also when no request arrives."""
    while True:
        service.controller.update(service.engine.queued_rows())
        await asyncio.sleep(0.05)


def config_to_env(config: ServeConfig) -> str:
    return json.dumps(dataclasses.asdict(config))


def app_from_env():
    """The app factory each ``--workers`` process calls (``uvicorn uer.serve.app:app_from_env --factory``)."""
    return create_app(ServeConfig(**json.loads(os.environ[CONFIG_ENV])))
