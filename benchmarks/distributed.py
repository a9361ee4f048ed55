"""The global-batch loss across processes: per-process time and memory against world size.

A fixed global batch (default B = 2048, d = 128, float32, scalar labels) is split evenly
over W = 1, 2, 4 processes (gloo on 127.0.0.1, one thread each); each process evaluates
``logratio.distributed.log_ratio_loss`` on its shard, forward and backward.  Reported per
world size:

* the median time of one step (forward + backward) over the ranks, and the slowest rank's;
* the median time of the same collectives alone, with the same sizes and no loss;
* the peak resident memory of a step above the process's baseline, in a separate run (large
  blocks mapped one by one, ``MALLOC_MMAP_THRESHOLD_``, so the resident set follows the live
  arrays; this slows a step down, so the timing runs keep the default allocator);
* the communication volume of one step, computed: the bytes of every collective's buffers
  and the bytes one rank sends under a ring algorithm.

A single process without any collective (``logratio.log_ratio_loss`` on the whole batch) is
the baseline.  Results go to ``<out>/distributed.json`` and ``distributed.md``.

    python benchmarks/distributed.py                   # W = 1, 2, 4; about two minutes
    python benchmarks/distributed.py --worlds 1 2 --batch 1024
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results"
#: memory runs only: every large block mapped on its own, so the resident set follows the live
#: arrays (timing runs keep the default allocator: mapping every block costs page faults)
MMAP_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}
TIMEOUT_S = 600
FLOAT_BYTES = 4  # float32
HEADER_INTS = 5  # shard size, width, label columns, dtype, status (int64 each)


def communication(batch: int, dim: int, labels: int, world: int) -> dict[str, int]:
    """Bytes of one step's collectives for an even split (logratio/distributed.py).

    ``buffers``: the size of each collective's output (gathers) or input (reductions), what
    crosses the process boundary at most.  ``sent_per_rank``: a ring algorithm's traffic,
    (W − 1)/W of an all-gather's output or a reduce-scatter's input, 2 (W − 1)/W of an
    all-reduce's buffer.
    """
    shard = -(-batch // world)
    gathers = {
        "shapes (all-gather)": world * HEADER_INTS * 8,
        "embeddings (all-gather)": world * shard * dim * FLOAT_BYTES,
        "labels (all-gather)": world * shard * labels * FLOAT_BYTES,
    }
    reduce = {"loss and count (all-reduce)": 2 * FLOAT_BYTES}
    scatter = {"gradient (reduce-scatter)": world * shard * dim * FLOAT_BYTES}
    ring = (world - 1) / world
    sent = ring * (sum(gathers.values()) + sum(scatter.values())) + 2 * ring * sum(reduce.values())
    return {
        **gathers,
        **reduce,
        **scatter,
        "buffers": sum(gathers.values()) + sum(reduce.values()) + sum(scatter.values()),
        "sent_per_rank": round(sent),
    }


# --------------------------------------------------------------------------- one rank


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets this process's VmHWM to its current resident set
        return True
    except OSError:
        return False


def worker(
    rank: int, world: int, port: int, batch: int, dim: int, repeats: int, memory: int
) -> None:
    """One rank: time steps and the collectives alone, or (``memory``) measure the peak of
    one step; prints one JSON line."""
    import torch
    import torch.distributed as dist

    import logratio
    import logratio.distributed as ld

    torch.set_num_threads(1)
    shard = batch // max(world, 1)
    g = torch.Generator().manual_seed(rank)
    emb = torch.randn(shard, dim, generator=g).requires_grad_(True)
    y = torch.rand(shard, generator=g)
    if world == 0:  # the baseline: one process, no collectives

        def step():
            logratio.log_ratio_loss(emb, y).backward()

        barrier = lambda: None  # noqa: E731
    else:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=120),
        )
        barrier = dist.barrier

        def step():
            ld.log_ratio_loss(emb, y).backward()

    def timed(fn, cpu=None):
        times = []
        for _ in range(repeats):
            barrier()
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times.append(time.perf_counter() - t0)
            if cpu is not None:
                cpu.append(time.process_time() - c0)
        return times

    step()  # warm-up
    emb.grad = None
    times = comm = peak = None
    cpu: list[float] = []
    if memory:
        base = _rss_kib("VmRSS")
        peak_ok = _reset_peak()
        step()
        peak = _rss_kib("VmHWM") - base if peak_ok else None
    else:
        times = timed(step, cpu)
    if world and not memory:
        header = torch.zeros(HEADER_INTS, dtype=torch.int64)
        headers = torch.empty(world * HEADER_INTS, dtype=torch.int64)
        gathered = torch.empty(world * shard, dim)
        labels = torch.empty(world * shard, 1)
        totals = torch.zeros(2)
        grad = torch.randn(world * shard, dim)
        out = torch.empty(shard, dim)

        def collectives():
            ld._all_gather_single(headers, header, None)
            ld._all_gather_single(gathered, emb.detach(), None)
            ld._all_gather_single(labels, y[:, None], None)
            dist.all_reduce(totals)
            ld._reduce_scatter_single(out, grad, None)

        collectives()
        comm = timed(collectives)
    if world:
        dist.barrier()
        dist.destroy_process_group()
    print(json.dumps({"rank": rank, "times": times, "cpu": cpu, "comm": comm, "peak_kib": peak}))


# --------------------------------------------------------------------------- the parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_world(world: int, batch: int, dim: int, repeats: int, memory: bool) -> list[dict]:
    """Start ``world`` ranks (0: the single-process baseline), wait for them, bounded."""
    env = dict(os.environ, OMP_NUM_THREADS="1", **(MMAP_ENV if memory else {}))
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                str(r),
                str(world),
                str(port),
                str(batch),
                str(dim),
                str(repeats),
                str(int(memory)),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(max(world, 1))
    ]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=TIMEOUT_S)
            if proc.returncode != 0:
                raise RuntimeError(f"a rank failed (exit {proc.returncode}):\n{err}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def summarise(world: int, ranks: list[dict], peaks: list[dict], batch: int, dim: int) -> dict:
    medians = [statistics.median(r["times"]) for r in ranks]
    row = {
        "world": world,
        "shard": batch // max(world, 1),
        "step_median_s": statistics.median(medians),
        "step_slowest_rank_s": max(medians),
        "step_cpu_median_s": statistics.median(statistics.median(r["cpu"]) for r in ranks),
        "peak_mib": max(r["peak_kib"] for r in peaks) / 1024 if peaks[0]["peak_kib"] else None,
    }
    if world:
        row["collectives_median_s"] = statistics.median(statistics.median(r["comm"]) for r in ranks)
        row["communication_bytes"] = communication(batch, dim, 1, world)
    return row


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fmt_s(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _fmt_b(n: float) -> str:
    for unit, k in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= k:
            return f"{n / k:.2f} {unit}"
    return f"{n:.0f} B"


def markdown(meta: dict, rows: list[dict]) -> str:
    lines = [
        "# The global-batch loss across processes",
        "",
        f"Machine: {meta['machine']}, {meta['cores']} cores; torch {meta['torch']}; "
        f"1-minute load average {meta['load_before']:.2f} before, {meta['load_after']:.2f} "
        "after (the machine was shared while timing).",
        "",
        f"Global batch B = {meta['batch']}, d = {meta['dim']}, float32, scalar labels, split "
        "evenly; gloo on 127.0.0.1, one thread per process; median of "
        f"{meta['repeats']} steps (forward + backward) after a warm-up.  "
        f"**The machine has {meta['cores']} cores, so 4 processes oversubscribe it**: "
        "their times include waiting for a core.  The CPU time of a step (median rank, "
        "`time.process_time`, the process's threads together) is the work a rank does, "
        "whether or not it had to wait for a core.",
        "",
        "| W | shard | step (median rank) | step (slowest rank) | CPU time of a step | "
        "collectives alone | "
        "peak memory of a step | buffers per step | sent per rank (ring) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = "1 (no collectives)" if r["world"] == 0 else str(r["world"])
        comm = r.get("communication_bytes")
        peak = "—" if r["peak_mib"] is None else f"{r['peak_mib']:.1f} MiB"
        lines.append(
            f"| {name} | {r['shard']} | {_fmt_s(r['step_median_s'])} | "
            f"{_fmt_s(r['step_slowest_rank_s'])} | {_fmt_s(r['step_cpu_median_s'])} | "
            + (f"{_fmt_s(r['collectives_median_s'])} | " if comm else "— | ")
            + f"{peak} | "
            + (
                f"{_fmt_b(comm['buffers'])} | {_fmt_b(comm['sent_per_rank'])} |"
                if comm
                else "— | — |"
            )
        )
    lines += [
        "",
        "Communication of one step (computed, per rank; W ranks, shard b = B/W): forward, an "
        "all-gather of W·5 int64 (shapes), of W·b·d embeddings and W·b labels, and an "
        "all-reduce of 2 scalars; backward, a reduce-scatter of W·b·d gradient values.  The "
        "gathered batch is B·d regardless of W, so the per-rank volume grows towards 2·B·d "
        "floats while the work per rank, O(b·B·d), falls as 1/W.",
        "",
        "A step gets faster with W only while the W processes each have a free core; the "
        "work per rank falls as 1/W, the gathered batch and the (B, d) gradient buffer do "
        "not.  The load average above says how much of the machine other jobs used.",
        "",
        "Peak memory is the resident-set high-water mark of one step above the process's "
        "resident set before it: the gathered batch, the (b, B) blocks of the rank's anchors "
        "and a (B, d) gradient buffer.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    import torch

    meta = {
        "machine": _cpu_name(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "batch": args.batch,
        "dim": args.dim,
        "repeats": args.repeats,
        "load_before": os.getloadavg()[0],
    }
    rows = []
    for world in [0, *args.worlds]:
        ranks = run_world(world, args.batch, args.dim, args.repeats, memory=False)
        peaks = run_world(world, args.batch, args.dim, args.repeats, memory=True)
        rows.append(summarise(world, ranks, peaks, args.batch, args.dim))
        print(json.dumps(rows[-1]), flush=True)
    meta["load_after"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distributed.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (args.out / "distributed.md").write_text(markdown(meta, rows))
    print((args.out / "distributed.md").read_text())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*(int(a) for a in sys.argv[2:9]))
    else:
        main()
