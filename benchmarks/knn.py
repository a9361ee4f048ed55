"""Benchmark of the neighbour table and the paper's sampler against the number of samples N.

``knn_table(labels, k=5)`` on uniform random float64 labels in [0, 1)^p, for p = 1, 3, 16 and
N = 10³ … 10⁶, with every method that serves the labels (``sort`` for p = 1, ``tree`` and
``blocked`` for all); then one epoch of ``DenseBatchSampler`` (batch 150, k = 5) over
N = 10⁶, for p = 1 and p = 3: building it (the table) and iterating all its batches.

Each case runs in a fresh subprocess, which reports the wall time of the call and its peak
resident memory (``ru_maxrss``: the interpreter, NumPy and the labels included; the resident
memory just before the call is reported too).  A case whose time, extrapolated from the two
smaller N of the same method and p (at least quadratically for ``blocked``), would exceed
``--limit`` seconds is skipped.  Results go to ``benchmarks/results/knn.json`` and a markdown
table ``benchmarks/results/knn.md``, which is also printed.

    python benchmarks/knn.py              # about 5 minutes on 2 CPU cores
    python benchmarks/knn.py --quick      # N up to 10⁵, no sampler epoch: well under a minute

Targets (2 CPU cores, k = 5): N = 10⁶ in under 10 s for p = 1 and 60 s for p = 3, a sampler
epoch over N = 10⁶ in under 30 s, peak memory under 2 GB in each case.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIZES = [1_000, 10_000, 100_000, 1_000_000]
DIMS = [1, 3, 16]
K = 5


def rss_mb() -> float:
    """Current resident memory of this process in MB (Linux), or NaN."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return math.nan


def child(kind: str, method: str, p: int, n: int) -> dict:
    """One case, in this (fresh) process."""
    import numpy as np

    import logratio

    labels = np.random.default_rng(0).uniform(0.0, 1.0, size=(n, p))
    if p == 1:
        labels = labels[:, 0]
    before = rss_mb()
    out: dict = {"kind": kind, "method": method, "p": p, "n": n, "rss_before_mb": before}
    start = time.perf_counter()
    if kind == "knn":
        logratio.knn_table(labels, K, method=method, progress=False)
        out["seconds"] = time.perf_counter() - start
    else:
        sampler = logratio.DenseBatchSampler(labels, batch_size=150, k=K, seed=0)
        out["build_seconds"] = time.perf_counter() - start
        mid = time.perf_counter()
        batches = sum(1 for _ in sampler)
        out["epoch_seconds"] = time.perf_counter() - mid
        out["seconds"] = time.perf_counter() - start
        out["batches"] = batches
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    return out


def run_case(kind: str, method: str, p: int, n: int, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, method, str(p), str(n)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        return {
            "kind": kind,
            "method": method,
            "p": p,
            "n": n,
            "status": f"timeout {timeout:.0f} s",
        }
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
        return {"kind": kind, "method": method, "p": p, "n": n, "status": f"failed: {tail[0]}"}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "status": "ok"}


def estimate(done: list[dict], method: str, n: int) -> float | None:
    """Seconds at ``n``, extrapolated from the two largest measured smaller N (or None)."""
    if any(r.get("status", "").startswith(("timeout", "skipped")) for r in done):
        return math.inf  # a smaller N already took too long
    ok = [r for r in done if r.get("status") == "ok" and r["n"] < n]
    if not ok:
        return None
    last = ok[-1]
    slope = 2.0 if method == "blocked" else 1.0
    if len(ok) >= 2 and ok[-2]["seconds"] > 0.05:
        slope = max(
            slope, math.log(last["seconds"] / ok[-2]["seconds"]) / math.log(last["n"] / ok[-2]["n"])
        )
    return last["seconds"] * (n / last["n"]) ** slope


def methods_for(p: int) -> list[str]:
    return (["sort"] if p == 1 else []) + ["tree", "blocked"]


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        "# knn_table and DenseBatchSampler against N",
        "",
        f"{meta['cpu']}, {meta['cores']} cores, Python {meta['python']}, NumPy {meta['numpy']}, "
        f"SciPy {meta['scipy']}; k = {K}, uniform float64 labels in [0, 1)^p.  "
        "Peak memory: the process's peak resident set (interpreter, NumPy and labels included).",
        "",
        "| case | method | p | N | time (s) | peak memory (MB) | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        case = "knn_table" if r["kind"] == "knn" else "sampler epoch"
        if r.get("status") == "ok":
            t = f"{r['seconds']:.3g}"
            mem = f"{r['peak_rss_mb']:.0f}"
            note = ""
            if r["kind"] == "sampler":
                build, epoch = r["build_seconds"], r["epoch_seconds"]
                note = f"build {build:.1f} s + {r['batches']:,} batches {epoch:.1f} s"
        else:
            t, mem, note = "—", "—", r["status"]
        lines.append(f"| {case} | {r['method']} | {r['p']} | {r['n']:,} | {t} | {mem} | {note} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--child", nargs=4, metavar=("KIND", "METHOD", "P", "N"), help=argparse.SUPPRESS
    )
    ap.add_argument("--limit", type=float, default=60.0, help="skip cases estimated longer (s)")
    ap.add_argument("--quick", action="store_true", help="N up to 10⁵, no sampler epoch")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    args = ap.parse_args(argv)
    if args.child:
        kind, method, p, n = args.child
        print(json.dumps(child(kind, method, int(p), int(n))))
        return
    import numpy as np

    try:
        import scipy

        scipy_version = scipy.__version__
    except ImportError:
        scipy_version = "not installed"
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    meta = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy_version,
        "k": K,
    }
    sizes = [n for n in SIZES if not args.quick or n <= 100_000]
    results: list[dict] = []
    for p in DIMS:
        for method in methods_for(p):
            done: list[dict] = []
            for n in sizes:
                guess = estimate(done, method, n)
                if guess is not None and guess > args.limit:
                    why = (
                        "a smaller N timed out"
                        if guess == math.inf
                        else f"about {guess:,.0f} s estimated"
                    )
                    row = {"kind": "knn", "method": method, "p": p, "n": n,
                           "status": f"skipped: {why}"}  # fmt: skip
                else:
                    row = run_case("knn", method, p, n, timeout=max(10 * args.limit, 600))
                done.append(row)
                results.append(row)
                print(json.dumps(row), flush=True)
    if not args.quick:
        for p in (1, 3):
            row = run_case("sampler", "auto", p, 1_000_000, timeout=1200)
            results.append(row)
            print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "knn-quick" if args.quick else "knn"
    (args.out / f"{name}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    table = markdown(results, meta)
    (args.out / f"{name}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
