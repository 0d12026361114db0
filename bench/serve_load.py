"""``uer serve`` under load: open-loop Poisson arrivals of real test tweets, one text per request,
at rising rates, through a real HTTP client, against the real server on 127.0.0.1.

    python bench/serve_load.py                                   # the main job's model and test set
    python bench/serve_load.py --rates 5,10,20,40 --seconds 10 --rows ours,plain,speed0

Rows (each its own server process, started and stopped here):

- ``ours``:   continuous (per-layer) batching, speed following the load under ``--latency_slo_ms``
- ``plain``:  plain micro-batching (``--max_batch`` / ``--max_wait_ms``), the same speed controller
- ``speed0``: continuous batching at a fixed speed 0, the full model's answers
- ``onnx_full``: plain batching at speed 0 on the ``onnxruntime`` runtime: the full model on ONNX
  Runtime behind the same ASGI stack (``--rows`` names it to include it)

Open loop: arrivals follow their schedule whatever the server's answers do, so a server that
cannot keep up shows a growing latency instead of a politely slowed client. Every rate is bounded
in requests (``--max_requests``) and seconds (``--seconds`` of arrivals, ``--drain`` to finish).
Per rate: throughput, p50/p99 latency, accuracy against the file's labels, mean exit layer and
mean speed. Writes JSON and a plot (latency and speed against offered load); prints the goals.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PY, ROOT, cpu_info, cpu_line, load_average, write_json  # noqa: E402

ROWS = {
    "ours": ["--batching", "continuous", "--latency_slo_ms", "{slo}", "--speed", "0", "--max_speed", "{max_speed}"],
    "plain": ["--batching", "plain", "--latency_slo_ms", "{slo}", "--speed", "0", "--max_speed", "{max_speed}"],
    "speed0": ["--batching", "continuous", "--speed", "0"],
    "onnx_full": ["--batching", "plain", "--speed", "0", "--runtime", "onnxruntime"],
}


def read_tests(path: Path, limit: int) -> list[tuple[str, str]]:
    """(text, label) rows of a UER TSV (header ``label<TAB>text_a``)."""
    from uer.data.tsv import read_tsv

    data = read_tsv(path)
    return [(e.text_a, e.label) for e in data.examples[:limit]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: Path, flags: list[str], threads: int, log: Path) -> None:
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "w")
        self.proc = subprocess.Popen([PY, "-m", "uer", "serve", str(model), "--host", "127.0.0.1", "--port",
                                      str(self.port), "--threads", str(threads), *flags],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve_load: the server exited {self.proc.returncode}; see {log}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise SystemExit(f"serve_load: the server did not come up in 180 s; see {log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


async def one_rate(url: str, tests: list[tuple[str, str]], rate: float, seconds: float, max_requests: int,
                   drain: float, seed: int) -> dict:
    """Poisson arrivals at ``rate`` per second for ``seconds`` (at most ``max_requests``)."""
    import httpx

    rng = random.Random(seed)
    results: list[dict] = []
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(drain + seconds), limits=limits) as client:
        async def send(k: int) -> None:
            text, label = tests[k % len(tests)]
            start = time.perf_counter()
            try:
                r = await client.post("/v1/predict", json={"texts": [text]})
                body = r.json() if r.status_code == 200 else None
            except httpx.HTTPError:
                body = None
            end = time.perf_counter()
            if body is None:
                results.append({"ok": False, "start": start, "end": end})
                return
            p = body["predictions"][0]
            results.append({"ok": True, "start": start, "end": end, "correct": p["label"] == label,
                            "exit": p["exit_layer"], "speed": body["speed"]})

        tasks, begin, at, k = [], time.perf_counter(), 0.0, 0
        while k < max_requests:
            at += rng.expovariate(rate)
            if at > seconds:
                break
            delay = begin + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(k)))
            k += 1
        done, pending = await asyncio.wait(tasks, timeout=drain) if tasks else (set(), set())
        for task in pending:  # bounded: what has not come back by then counts as failed
            task.cancel()
    ok = sorted((r for r in results if r["ok"]), key=lambda r: r["end"] - r["start"])
    latency = [r["end"] - r["start"] for r in ok]
    span = (max(r["end"] for r in ok) - min(r["start"] for r in ok)) if ok else float("nan")

    def pct(q: float) -> float | None:
        return round(1000 * latency[min(len(latency) - 1, int(q * len(latency)))], 2) if latency else None

    return {"offered_rate": rate, "sent": k, "answered": len(ok), "failed": k - len(ok),
            "throughput": round(len(ok) / span, 2) if ok and span > 0 else None,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "accuracy": round(sum(r["correct"] for r in ok) / len(ok), 4) if ok else None,
            "mean_exit_layer": round(sum(r["exit"] for r in ok) / len(ok), 3) if ok else None,
            "mean_speed": round(sum(r["speed"] for r in ok) / len(ok), 3) if ok else None}


def sustained(points: list[dict], slo_ms: float) -> float:
    """The highest offered rate answered in full with p99 within the target (0 if none)."""
    good = [p["offered_rate"] for p in points
            if p["failed"] == 0 and p["p99_ms"] is not None and p["p99_ms"] <= slo_ms]
    return max(good, default=0.0)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, points in result["rows"].items():
        rates = [p["offered_rate"] for p in points]
        ax1.plot(rates, [p["p99_ms"] for p in points], marker="o", label=f"{name} p99")
        ax1.plot(rates, [p["p50_ms"] for p in points], marker=".", linestyle=":", label=f"{name} p50")
        ax2.plot(rates, [p["mean_speed"] for p in points], marker="o", label=name)
    ax1.axhline(result["latency_slo_ms"], color="grey", linestyle="--", label="target")
    ax1.set(xlabel="offered load (requests/s)", ylabel="latency (ms)", yscale="log", title="latency")
    ax2.set(xlabel="offered load (requests/s)", ylabel="mean speed used", title="speed follows the load")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/serve_load.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="out/fastbert/model.pt", help="built by python run_fastbert.py (the main job)")
    p.add_argument("--data", default="data/tweets/test.tsv", help="labelled test tweets (label, text_a)")
    p.add_argument("--rows", default="ours,plain,speed0", help=f"comma-separated, of {', '.join(ROWS)}")
    p.add_argument("--rates", default="5,10,20,40,80", help="offered requests per second, rising")
    p.add_argument("--seconds", type=float, default=10.0, help="arrivals per rate")
    p.add_argument("--max_requests", type=int, default=1500, help="arrivals per rate at most")
    p.add_argument("--drain", type=float, default=30.0, help="seconds to wait for the last answers of a rate")
    p.add_argument("--warmup", type=float, default=3.0,
                   help="seconds of arrivals at the first rate before measuring (new shapes build kernels once)")
    p.add_argument("--latency_slo_ms", type=float, default=100.0)
    p.add_argument("--max_speed", type=float, default=0.8)
    p.add_argument("--max_batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    p.add_argument("--tests", type=int, default=2000, help="test rows cycled through")
    p.add_argument("--out", default="bench/results/serve_load.json")
    p.add_argument("--plot", default="bench/results/serve_load.png")
    args = p.parse_args(argv)
    model, data = ROOT / args.model, ROOT / args.data
    for path, what in ((model, "--model"), (data, "--data")):
        if not path.is_file():
            raise SystemExit(f"serve_load: {what} {path} does not exist (run python run_fastbert.py first)")
    rows = [r.strip() for r in args.rows.split(",")]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"serve_load: --rows {unknown[0]!r}: expected some of {', '.join(ROWS)}")
    rates = [float(r) for r in args.rates.split(",")]
    tests = read_tests(data, args.tests)
    cpu = cpu_info()
    print(cpu_line(cpu), f"| load average {load_average()}", flush=True)
    result = {"model": args.model, "data": args.data, "tests": len(tests), "latency_slo_ms": args.latency_slo_ms,
              "max_speed": args.max_speed, "max_batch": args.max_batch, "server_threads": args.threads,
              "seconds_per_rate": args.seconds, "warmup_seconds": args.warmup, "cpu": {k: cpu[k] for k in ("model", "cores", "shown_flags")},
              "rows": {}}
    out = ROOT / args.out
    for name in rows:
        flags = [f.format(slo=args.latency_slo_ms, max_speed=args.max_speed) for f in ROWS[name]]
        out.parent.mkdir(parents=True, exist_ok=True)
        server = Server(model, [*flags, "--max_batch", str(args.max_batch)], args.threads,
                        out.with_name(f"serve_load.{name}.log"))
        points = []
        try:
            if args.warmup > 0:  # not recorded
                asyncio.run(one_rate(server.url, tests, rates[0], args.warmup, args.max_requests, args.drain, seed=-1))
            for i, rate in enumerate(rates):
                point = asyncio.run(one_rate(server.url, tests, rate, args.seconds, args.max_requests, args.drain, seed=i))
                points.append(point)
                print(f"{name:>9} {rate:7.1f}/s: {json.dumps({k: v for k, v in point.items() if k != 'offered_rate'})}",
                      flush=True)
                if point["failed"] > point["sent"] // 2:  # far past saturation: higher rates only add waiting
                    break
        finally:
            server.stop()
        result["rows"][name] = points
    result["sustained_rate"] = {n: sustained(pts, args.latency_slo_ms) for n, pts in result["rows"].items()}
    write_json(out, result)
    plot(result, ROOT / args.plot)
    print(f"written: {args.out}, {args.plot}")
    goals(result)
    return 0


def goals(result: dict) -> None:
    """The claims this bench exists to test, each printed met / not met."""
    rate = result["sustained_rate"]
    slo = result["latency_slo_ms"]

    def line(ok: bool | None, text: str) -> None:
        print(f"goal {'met' if ok else 'NOT met' if ok is not None else 'not measured'}: {text}")

    if "ours" in rate and "speed0" in rate:
        line(rate["ours"] >= 1.5 * rate["speed0"] > 0,
             f"speed that follows the load sustains >= 1.5x the rate of the full model at p99 <= {slo:g} ms "
             f"({rate['ours']:g} vs {rate['speed0']:g} requests/s)")
        calm = [(o, s) for o, s in zip(result["rows"]["ours"], result["rows"]["speed0"])
                if s["offered_rate"] <= rate["speed0"] and o["accuracy"] is not None and s["accuracy"] is not None]
        if calm:
            worst = max(s["accuracy"] - o["accuracy"] for o, s in calm)
            line(worst <= 0.01, f"where the full model keeps up, accuracy within 1 point of it (worst gap {100 * worst:.2f})")
        else:
            line(None, "accuracy within 1 point of the full model where it keeps up")
    if "ours" in rate and "plain" in rate:
        line(rate["ours"] >= rate["plain"] and rate["ours"] > 0,
             f"continuous batching sustains at least the rate of plain micro-batching ({rate['ours']:g} vs {rate['plain']:g})")


if __name__ == "__main__":
    sys.exit(main())
