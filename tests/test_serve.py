"""``python -m uer serve``: the real server in a subprocess on 127.0.0.1, spoken to over HTTP.

A request's answer equals ``predict()`` on its texts one at a time, whatever it was batched with
(continuous and plain batching); bad requests are one-line 4xx errors and the server goes on; a
client that leaves has its rows dropped; SIGTERM lets the request in flight finish and exits 0.
The engine and the speed controller are also checked in-process.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.test_predict_cli import build_models

TEXTS = ["the phone is terrible", "really movie was really wonderful", "today car is average today", "the bus is bad",
         "the movie was wonderful", "today phone is average", "really bad car", "wonderful wonderful day today"]


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return build_models(tmp_path_factory.getbasetemp() / "uer_serve_models")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: Path, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uer", "serve", str(model), "--port", str(self.port), "--threads", "1", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
        deadline = time.monotonic() + 120  # a loaded machine imports torch slowly
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError("the server did not come up in time")

    def post(self, body, **kw) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(self.url + "/v1/predict", content=content, timeout=60, **kw)

    def metric(self, name: str) -> float:
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def continuous(models):
    server = Server(models["classifier"], "--max_batch", "4", "--max_texts", "2000", "--max_body_bytes", "100000")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plain(models):
    server = Server(models["classifier"], "--batching", "plain", "--max_batch", "8", "--max_wait_ms", "20")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reference(models):
    from uer.fastbert.predictor import FastBertClassifier

    return FastBertClassifier.load(models["classifier"])


def default_speed(reference) -> float:
    """What the server runs requests that name no speed at: the speed the training run chose."""
    from uer.predict import ClassifierModel

    return ClassifierModel(reference).settings()[0]


def concurrently(server: Server, bodies: list[dict]) -> list[httpx.Response]:
    async def go():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/predict", json=b) for b in bodies))

    return asyncio.run(go())


def assert_same_as_alone(reference, texts: list[str], speed: float, policy, got: list[dict]) -> None:
    """Each text's answer equals predict() on that text alone."""
    assert len(got) == len(texts)
    for text, answer in zip(texts, got):
        want = reference.predict([text], speed=speed, policy=policy)
        assert answer["label"] == want.labels[0], text
        assert answer["exit_layer"] == want.exit_layers[0], text
        assert list(answer["probabilities"]) == reference.labels
        assert list(answer["probabilities"].values()) == pytest.approx(want.probabilities[0].tolist(), abs=1e-5)


@pytest.mark.parametrize("batching", ["continuous", "plain"])
def test_answers_do_not_depend_on_the_batch(batching, continuous, plain, reference):
    server = continuous if batching == "continuous" else plain
    batches_before = server.metric("uer_batch_rows_count")
    bodies = [{"texts": TEXTS[i % 5: i % 5 + 1 + i % 4], "speed": s}
              for i, s in enumerate([0.0, 0.3, 0.6, 0.9, 0.3, 0.6, 1.0, 0.45])]
    bodies.append({"texts": TEXTS, "speed": 0.5, "policy": "patience"})  # per-row state across layers
    bodies.append({"texts": TEXTS[:3]})  # the server's speed
    responses = concurrently(server, bodies)
    for body, response in zip(bodies, responses):
        assert response.status_code == 200, response.text
        answer = response.json()
        speed = body.get("speed", default_speed(reference))
        assert answer["speed"] == speed
        assert_same_as_alone(reference, body["texts"], speed, body.get("policy"), answer["predictions"])
    rows = sum(len(b["texts"]) for b in bodies)
    calls = server.metric("uer_batch_rows_count") - batches_before
    # rows of different requests shared model calls (continuous: a call per layer, so count layers too)
    assert calls < rows * (3 if batching == "continuous" else 1)


def test_bad_requests_are_one_line_4xx(continuous):
    cases = [
        (b"{bad", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        ({}, 422, "'texts' is missing"),
        ({"texts": "one text"}, 422, "must be a list"),
        ({"texts": ["fine", 3]}, 422, "texts[1] is int"),
        ({"texts": ["fine", "  "]}, 422, "texts[1] is empty"),
        ({"texts": []}, 422, "empty"),
        ({"texts": ["x"] * 2001}, 413, "limit of 2000"),
        ({"texts": ["long text " * 11000]}, 413, "100000"),
        ({"texts": ["fine"], "speed": 1.5}, 422, "'speed' must be a number in [0, 1]"),
        ({"texts": ["fine"], "speed": True}, 422, "'speed'"),
        ({"texts": ["fine"], "speed": "0.5"}, 422, "'speed'"),
        ({"texts": ["fine"], "policy": "nope"}, 422, "unknown policy"),
        ({"texts": ["fine"], "colour": "red"}, 422, "unknown key 'colour'"),
        ({"texts": ["fine"], "texts_b": ["other"]}, 422, "single texts"),
    ]
    for body, status, words in cases:
        response = continuous.post(body)
        assert response.status_code == status, (body, response.text)
        assert "\n" not in response.text and set(response.json()) == {"error"}
        assert words in response.json()["error"], (body, response.text)
    response = httpx.get(continuous.url + "/v1/predict", timeout=10)
    assert response.status_code == 405 and set(response.json()) == {"error"}
    assert continuous.post({"texts": ["the bus is bad"]}).status_code == 200  # still serving


def test_client_that_leaves_costs_nothing(continuous):
    dropped, exited = continuous.metric("uer_rows_dropped_total"), continuous.metric("uer_exit_layer_count")
    texts = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(2000)]  # 1500+ layer steps of 4 rows: far longer than 0.05 s
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
        httpx.post(continuous.url + "/v1/predict", json={"texts": texts, "speed": 0.0}, timeout=httpx.Timeout(60, read=0.05))
    deadline = time.monotonic() + 30
    while continuous.metric("uer_rows_dropped_total") == dropped and time.monotonic() < deadline:
        time.sleep(0.05)
    assert continuous.metric("uer_rows_dropped_total") > dropped
    while continuous.metric("uer_in_flight_rows") + continuous.metric("uer_queue_rows") and time.monotonic() < deadline:
        time.sleep(0.05)  # the dropped rows leave at the next layer step
    assert continuous.metric("uer_in_flight_rows") == 0 and continuous.metric("uer_queue_rows") == 0
    assert continuous.metric("uer_exit_layer_count") - exited < len(texts)  # not all of it ran
    assert continuous.post({"texts": ["the bus is bad"]}).status_code == 200


def test_metrics_and_docs(continuous, reference):
    text = httpx.get(continuous.url + "/metrics", timeout=10).text
    for name in ("uer_request_latency_seconds_bucket", "uer_exit_layer_bucket", "uer_batch_rows_bucket",
                 "uer_queue_rows", "uer_in_flight_rows", "uer_speed", "uer_requests_total", "uer_rows_dropped_total"):
        assert name in text, name
    assert continuous.metric("uer_speed") == default_speed(reference)
    assert continuous.metric("uer_request_latency_seconds_count") >= 10
    assert 'uer_requests_total{status="422"}' in text
    schema = httpx.get(continuous.url + "/openapi.json", timeout=10).json()
    assert "texts" in json.dumps(schema["paths"]["/v1/predict"]["post"]["requestBody"])
    assert httpx.get(continuous.url + "/docs", timeout=10).status_code == 200


def test_model_that_fails_to_load_exits_2_before_the_port_opens(tmp_path):
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"not a checkpoint")
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "uer", "serve", str(bogus), "--port", str(port)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "model.pt" in proc.stderr


@pytest.mark.parametrize("flags, words", [
    (["--policy", "nope"], "valid policies: confidence, entropy"),
    (["--speed", "0.9", "--max_speed", "0.5", "--latency_slo_ms", "10"], "above --max_speed"),
    (["--policy", "patience"], "give a speed for this policy"),  # the run chose its speed under entropy
])
def test_bad_serve_flags_are_one_line_before_the_port_opens(models, capsys, flags, words):
    from uer.__main__ import main

    assert main(["serve", str(models["classifier"]), "--port", "0", *flags]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err


def test_tagger_and_sigterm_drain(models):
    """A tagger (plain batching) answers as NerTagger.predict; SIGTERM mid-request: the answer still comes, exit 0."""
    from uer.predict import load_predictor

    server = Server(models["tagger"], "--max_batch", "2", "--max_texts", "2000")
    try:
        texts = ["我 在 北 京 和 江 泽 民", "李 鹏 是 上 海 的", "新 华 社"]
        response = server.post({"texts": texts, "speed": 0.3})
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == load_predictor(models["tagger"]).predict(texts, 0.3)
        many = [texts[i % 3] for i in range(2000)]
        result: dict = {}
        thread = threading.Thread(target=lambda: result.update(r=server.post({"texts": many, "speed": 0.0})))
        thread.start()
        deadline = time.monotonic() + 30
        while server.metric("uer_in_flight_rows") + server.metric("uer_queue_rows") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        server.proc.send_signal(signal.SIGTERM)
        thread.join(120)
        assert result["r"].status_code == 200 and len(result["r"].json()["predictions"]) == 2000
        assert server.proc.wait(60) == 0
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------- in-process


@pytest.mark.parametrize("fused", [False, True])
def test_engine_mixes_speeds_and_policies_per_row(models, reference, fused):
    """The continuous engine alone: jobs of different speeds and policies share layers, each row
    gets what predict() gives it alone."""
    from uer.predict import ClassifierModel
    from uer.serve.engine import ContinuousEngine, LayerStack

    model = ClassifierModel(reference)
    stack = LayerStack(model.network, fused=fused)
    engine = ContinuousEngine(stack, lambda items: (reference.encode(items).ids, reference.encode(items).segs),
                              reference.tokenizer.vocab.pad_id, max_batch=3)
    jobs = [(TEXTS[:5], 0.4, "entropy"), (TEXTS[2:], 0.7, "patience"), (TEXTS[1:4], 0.0, "confidence"),
            (TEXTS, 0.5, "topk_entropy"), (TEXTS[::-1], 1.0, "entropy")]
    engine.start()
    try:
        submitted = [(texts, speed, policy, engine.submit(texts, speed, policy)) for texts, speed, policy in jobs]
        for texts, speed, policy, job in submitted:
            got = [model.result(p, layer) for p, layer in job.future.result(timeout=60)]
            assert_same_as_alone(reference, texts, speed, policy, got)
    finally:
        engine.stop(30)
    assert engine.in_flight() == 0 and engine.error is None


def test_engine_runs_the_full_model_where_the_exit_plan_says_early_exit_does_not_pay(models):
    """A plan (made from given costs, so the same on every machine) that steps from speed 0.6 on: the
    engine, told by the predictor's plan, answers at 0.4 with the full model (every row at the last
    layer, as predict() does) and at 0.8 by early exit, in one mixed batch."""
    from uer.exit.pays import ExitProfile, StepCosts, make_plan
    from uer.fastbert.predictor import FastBertClassifier
    from uer.predict import ClassifierModel
    from uer.serve.engine import ContinuousEngine, LayerStack

    clf = FastBertClassifier.load(models["classifier"], runtime="eager")
    layers = clf.runner.layers_num
    speeds = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # a row leaves after layer 1 with share = speed, else at the last
    profile = ExitProfile({"name": "entropy"}, layers, speeds, tuple((s, *[0.0] * (layers - 2), 1 - s) for s in speeds), 100)
    layer = 1e-3  # a step costs 1.4 layers: on 3 layers early exit takes (1.4 - 0.93 s) of the full model's time
    kept = make_plan(profile, StepCosts((1, 8), (layers * layer, 8 * layers * layer), (1.4 * layer, 11.2 * layer), 0.0), "given")
    assert kept.from_speed == 0.6
    clf.runner.use_plan(kept)
    model = ClassifierModel(clf)
    engine = ContinuousEngine(LayerStack(model.network), lambda items: (clf.encode(items).ids, clf.encode(items).segs),
                              clf.tokenizer.vocab.pad_id, max_batch=4,
                              full_depth=lambda rule, speed: not clf.runner.plan(speed, rule).step)
    engine.start()
    try:
        low, high = engine.submit(TEXTS, 0.4, "entropy"), engine.submit(TEXTS, 1.0, "entropy")
        got_low = [model.result(p, layer) for p, layer in low.future.result(timeout=60)]
        got_high = [model.result(p, layer) for p, layer in high.future.result(timeout=60)]
    finally:
        engine.stop(30)
    assert [a["exit_layer"] for a in got_low] == [layers] * len(TEXTS)
    assert_same_as_alone(clf, TEXTS, 0.4, "entropy", got_low)
    assert_same_as_alone(clf, TEXTS, 1.0, "entropy", got_high)
    assert [a["exit_layer"] for a in got_high] == [1] * len(TEXTS)


def test_speed_controller_follows_the_load():
    from uer.serve.controller import SpeedController

    now = [0.0]
    ctl = SpeedController(floor=0.1, ceiling=0.4, target_s=0.1, batch=8, step=0.1, interval=1.0, clock=lambda: now[0])

    def tick(latency=None, queued=0):
        if latency is not None:
            ctl.observe(latency)
        now[0] += 1.0
        return ctl.update(queued)

    assert ctl.speed == 0.1
    assert tick(latency=0.05) == 0.1  # within the target: stays (and never below the floor)
    assert [tick(latency=0.09) for _ in range(4)] == pytest.approx([0.2, 0.3, 0.4, 0.4])  # p90 > 80%: up to the ceiling
    assert tick(latency=0.06) == pytest.approx(0.4)  # between low and high: holds
    assert [tick() for _ in range(4)] == pytest.approx([0.3, 0.2, 0.1, 0.1])  # idle: back down to the floor
    assert tick(queued=9) == pytest.approx(0.2)  # a queue longer than a batch raises it before latency shows
    with pytest.raises(ValueError):
        SpeedController(floor=0.5, ceiling=0.2, target_s=0.1, batch=8)


def test_adaptive_speed_server_reports_its_speed(models):
    """Under a latency target the server reports the speed it used; a request naming one gets it."""
    server = Server(models["classifier"], "--latency_slo_ms", "0.001", "--speed", "0.2", "--max_speed", "0.6")
    try:
        speeds, deadline = [], time.monotonic() + 60
        # Every request misses a 1 us target, so each 0.2 s window that sees one raises the speed by a
        # step: the ceiling needs 8 windows. Requests go back to back until then, bounded in time rather
        # than in count, so a fast CPU (many requests per window) and a slow one both get there.
        while time.monotonic() < deadline:
            speeds.append(server.post({"texts": TEXTS[:2]}).json()["speed"])
            if speeds[-1] == pytest.approx(0.6):
                break
        assert speeds[0] >= 0.2 and speeds[-1] == pytest.approx(0.6), speeds
        assert all(0.2 - 1e-9 <= s <= 0.6 + 1e-9 for s in speeds), speeds
        # the gauge shows the controller's speed; an idle window may already have stepped it down once
        assert 0.55 - 1e-9 <= server.metric("uer_speed") <= 0.6 + 1e-9
        assert server.post({"texts": TEXTS[:2], "speed": 0.05}).json()["speed"] == 0.05
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_two_uvicorn_workers(models, reference):
    server = Server(models["classifier"], "--workers", "2")
    try:
        responses = concurrently(server, [{"texts": TEXTS, "speed": 0.5}] * 6)
        for response in responses:
            assert_same_as_alone(reference, TEXTS, 0.5, None, response.json()["predictions"])
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_ray_serve_two_replicas(models, reference):
    ray = pytest.importorskip("ray")
    from ray import serve

    from uer.serve import ServeConfig, ray_application

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": os.getcwd()}})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(ray_application(ServeConfig(str(models["classifier"]), threads=1), replicas=2, cpus_per_replica=0.5),
                  route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/healthz", timeout=30).status_code == 200
        for _ in range(4):
            response = httpx.post(url + "/v1/predict", json={"texts": TEXTS, "speed": 0.5}, timeout=60)
            assert_same_as_alone(reference, TEXTS, 0.5, None, response.json()["predictions"])
    finally:
        serve.shutdown()
        ray.shutdown()
