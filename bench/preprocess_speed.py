"""Speed and peak memory of preprocess.py on People's Daily (bench, not a test).

    python corpora/build_zh.py                      # once: data/corpora/peoples_daily.txt
    python bench/preprocess_speed.py                # -> table on stdout, bench/results/preprocess_speed.json

Runs ``preprocess.py`` as a child process (seq 128, google_zh_vocab) for: the bert processor at 1
and 2 workers, the mlm processor at 1 worker, and the bert processor on the corpus repeated 4
times (peak memory must stay flat). Peak memory is sampled from /proc every 20 ms over the whole
process tree: ``rss_max`` is the largest single process (what ``/usr/bin/time`` reports, and what
UER-py's 417 MiB is), ``pss_sum`` the tree's proportional set size (shared pages counted once).
Wall time includes interpreter start-up and imports, as a user sees it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, write_json, zh_vocab  # noqa: E402
from uer.utils.cli import UsageError, run_main  # noqa: E402

UER = {"bert_1": 10.7, "bert_2": 7.6, "mlm_1": 24.5}  # UER-py HEAD 5743050, same corpus, seq 128 (the issue)


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _kb(path: str, key: str) -> int:
    try:
        for line in open(path):
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(args: list[str]) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "preprocess.py"), *args, "--no_progress"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rss_max = pss_sum = 0
    while proc.poll() is None:
        pids = _tree(proc.pid)
        rss_max = max([rss_max] + [_kb(f"/proc/{p}/status", "VmRSS:") for p in pids])
        pss_sum = max(pss_sum, sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids))
        time.sleep(0.02)
    wall = time.perf_counter() - start
    out, err = proc.communicate()
    if proc.returncode:
        raise UsageError(f"preprocess.py {' '.join(args)} failed (exit {proc.returncode}): "
                         f"{(err.strip().splitlines() or ['no output'])[-1]}")
    return {"wall_s": round(wall, 2), "rss_max_mib": round(rss_max / 1024, 1), "pss_sum_mib": round(pss_sum / 1024, 1),
            "summary": err.strip().splitlines()[-4:]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=str(ROOT / "data" / "corpora" / "peoples_daily.txt"))
    p.add_argument("--repeats", type=int, default=1, help="runs per case; the fastest is kept")
    p.add_argument("--output", default=str(ROOT / "bench" / "results" / "preprocess_speed.json"))
    args = p.parse_args(argv)
    return run_main("preprocess_speed.py", lambda: _run(args))


def _run(args) -> int:
    corpus = Path(args.corpus)
    if not corpus.is_file():
        raise UsageError(f"{corpus} is missing: run python corpora/build_zh.py")
    lines = sum(1 for line in open(corpus, encoding="utf-8") if line.strip())
    tmp = Path(tempfile.mkdtemp(prefix="uer-bench-"))
    big = tmp / "x4.txt"
    with open(big, "w", encoding="utf-8") as f:
        for _ in range(4):
            f.write(corpus.read_text(encoding="utf-8"))
    cases = [("bert_1", corpus, "bert", 1), ("bert_2", corpus, "bert", 2), ("mlm_1", corpus, "mlm", 1),
             ("bert_1_x4", big, "bert", 1), ("bert_2_x4", big, "bert", 2)]
    results = {}
    print(f"{'case':<11} {'wall s':>7} {'lines/s':>9} {'rss_max MiB':>12} {'pss_sum MiB':>12} {'UER-py s':>9} {'speed-up':>9}")
    for name, path, processor, workers in cases:
        runs = [run(["--corpus_path", str(path), "--data_processor", processor, "--vocab_path", str(zh_vocab()),
                     "--dataset_path", str(tmp / name), "--seq_length", "128", "--processes_num", str(workers)])
                for _ in range(args.repeats)]
        best = min(runs, key=lambda r: r["wall_s"])
        n = lines * (4 if "x4" in name else 1)
        best["lines_per_s"] = round(n / best["wall_s"])
        results[name] = best
        uer = UER.get(name)
        speedup = f"{uer / best['wall_s']:.2f}x" if uer else ""
        print(f"{name:<11} {best['wall_s']:>7.2f} {best['lines_per_s']:>9} {best['rss_max_mib']:>12} {best['pss_sum_mib']:>12} "
              f"{uer or '':>9} {speedup:>9}")
    for name, r in results.items():
        print(f"{name}: " + " | ".join(r["summary"]))
    write_json(Path(args.output), {"corpus_lines": lines, "cpus": os.cpu_count(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
