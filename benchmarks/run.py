"""Benchmarks of the dense log-ratio loss: time and peak memory against the batch size B.

One command measures, in float32 with d = 128 and scalar labels:

1. loss + gradient time against B for NumPy, PyTorch (closed-form autograd rule; CPU, and CUDA
   when present), JAX (``jit``; CPU, and GPU when present) and CuPy (when present), next to the
   floor ``torch.cdist(F, F)`` at the same B, and the core compiled by ``torch.compile``;
2. the same loss computed by materialising all B×B×B triplets (a straightforward PyTorch
   implementation, and the explicit-triplet loss on the dense triplet list of the miner),
   until the triplets would take more memory than a cap;
3. the PyTorch adapter's closed-form backward against plain autograd through the same core;
4. peak memory against B, one fresh subprocess per configuration and B (resident set for the
   CPU frameworks, ``tracemalloc`` for NumPy too, the allocators' peaks on a GPU).

Each configuration runs in its own subprocess (the worker threads of one framework would
otherwise spin on the cores another one needs), after waiting for the machine to be idle;
every timing is a median over ``--repeats`` calls after a warm-up, reported as a ratio to the
floor, which is timed first and last (the lower median counts).  Results go to
``<out>/results.json`` (``results-quick.json`` with ``--quick``), a markdown table
``results.md`` and a log-log plot ``benchmark.png``.

    python benchmarks/run.py            # the full suite (B = 64 … 16384): about 10 min, 2 cores
    python benchmarks/run.py --quick    # B = 64 … 2048, a couple of minutes
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
FULL_SIZES = [64, 128, 256, 512, 1024, 2048, 4096, 8192, 12288, 16384]
QUICK_SIZES = [64, 128, 256, 512, 1024, 2048]
GiB = 1 << 30
TARGET_BATCH = 12288  # where the resident-memory target is set

#: What each configuration computes, for the tables and the plot.
DESCRIPTIONS = {
    "cdist": "torch.cdist(F, F): the floor",
    "numpy": "NumPy, core (closed-form gradient)",
    "torch": "PyTorch adapter: loss.backward() with the closed-form rule",
    "torch-autograd": "PyTorch autograd through the core's operations",
    "torch-compile": "torch.compile(core loss_and_grad), inductor: fused passes",
    "jax": "JAX, jit(value_and_grad) with the custom_jvp rule",
    "cupy": "CuPy, core on the GPU",
    "cdist-cuda": "torch.cdist(F, F) on CUDA: the GPU floor",
    "torch-cuda": "PyTorch adapter on CUDA",
    "jax-gpu": "JAX jit on the GPU",
    "triplets-dense": "materialised B×B×B residual differences, PyTorch autograd",
    "triplets-miner": "dense_triplets + triplet_log_ratio_loss, PyTorch autograd",
}


# --------------------------------------------------------------------------- inputs


def make_inputs(batch: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian float32 embeddings (B, d) and uniform scalar labels (B,)."""
    rng = np.random.default_rng(seed + batch)
    emb = rng.standard_normal((batch, dim)).astype(np.float32)
    labels = rng.uniform(0.0, 10.0, size=batch).astype(np.float32)
    return emb, labels


def materialised_bytes(batch: int) -> int:
    """Working memory of the B×B×B implementation: about four B³ float32 arrays."""
    return 16 * batch**3


def miner_bytes(batch: int, dim: int) -> int:
    """Working memory of the explicit-triplet loss: T triplets × (d floats gathered × 4 + idx)."""
    t = batch * (batch - 1) * (batch - 2) // 2
    return t * (16 * dim + 64)


def autograd_bytes(batch: int) -> int:
    """Tensors that autograd keeps for the core's operations: about a dozen B×B arrays."""
    return 48 * batch * batch


# --------------------------------------------------------------------------- configurations


@dataclass
class Config:
    """One thing to time: ``setup(batch)`` returns a zero-argument callable that runs it once."""

    name: str
    setup: Callable[[int], Callable[[], Any]]
    max_batch: int | None = None  # skipped above this B (memory or time cap)


def _torch_sync(device: str) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def cdist_setup(device: str) -> Callable[[int], Callable[[], Any]]:
    def setup(batch: int) -> Callable[[], Any]:
        import torch

        emb, _ = make_inputs(batch, ARGS.dim)
        f = torch.from_numpy(emb).to(device)
        sync = _torch_sync(device)

        def run() -> Any:
            out = torch.cdist(f, f)
            sync()
            return out

        return run

    return setup


def numpy_setup(batch: int) -> Callable[[], Any]:
    import logratio

    emb, y = make_inputs(batch, ARGS.dim)
    return lambda: logratio.log_ratio_loss_and_grad(emb, y)


def torch_setup(device: str, autograd_through_core: bool = False) -> Callable:
    def setup(batch: int) -> Callable[[], Any]:
        import torch

        import logratio
        import logratio.loss

        emb, y = make_inputs(batch, ARGS.dim)
        f = torch.from_numpy(emb).to(device).requires_grad_(True)
        yt = torch.from_numpy(y).to(device)
        loss_fn = logratio.loss.log_ratio_loss if autograd_through_core else logratio.log_ratio_loss
        sync = _torch_sync(device)

        def run() -> Any:
            f.grad = None
            loss = loss_fn(f, yt)
            loss.backward()
            sync()
            return loss.detach(), f.grad

        return run

    return setup


def torch_compile_setup(batch: int) -> Callable[[], Any]:
    """The core's closed form compiled by inductor: what fusing the (block, B) passes buys."""
    import torch

    import logratio.loss

    torch._dynamo.reset()  # one compilation per B, never the recompilation limit's fallback
    emb, y = make_inputs(batch, ARGS.dim)
    f, yt = torch.from_numpy(emb), torch.from_numpy(y)
    fn = torch.compile(logratio.loss.log_ratio_loss_and_grad, dynamic=False)
    return lambda: fn(f, yt)


def jax_setup(platform_name: str) -> Callable:
    def setup(batch: int) -> Callable[[], Any]:
        import jax

        import logratio

        dev = jax.devices(platform_name)[0]
        emb, y = make_inputs(batch, ARGS.dim)
        f = jax.device_put(emb, dev)
        yj = jax.device_put(y, dev)
        step = jax.jit(jax.value_and_grad(lambda x, lab: logratio.log_ratio_loss(x, lab)))

        def run() -> Any:
            return jax.block_until_ready(step(f, yj))

        return run

    return setup


def cupy_setup(batch: int) -> Callable[[], Any]:
    import cupy

    import logratio

    emb, y = make_inputs(batch, ARGS.dim)
    f, yc = cupy.asarray(emb), cupy.asarray(y)

    def run() -> Any:
        out = logratio.log_ratio_loss_and_grad(f, yc)
        cupy.cuda.Device().synchronize()
        return out

    return run


def triplets_dense_setup(batch: int) -> Callable[[], Any]:
    """The loss as a straightforward implementation writes it: every (a, i, j) materialised."""
    import torch

    emb, y = make_inputs(batch, ARGS.dim)
    f = torch.from_numpy(emb).requires_grad_(True)
    yt = torch.from_numpy(y)
    eps = 1e-6
    idx = torch.arange(batch)
    # counted triplets: i ≠ a, j ≠ a, i < j (each unordered neighbour pair once)
    pair = (idx[None, :, None] < idx[None, None, :]) & (idx[:, None, None] != idx[None, :, None])
    pair = pair & (idx[:, None, None] != idx[None, None, :])
    count = pair.sum()

    def run() -> Any:
        f.grad = None
        sq = (f * f).sum(1)
        d = (sq[:, None] + sq[None, :] - 2 * f @ f.T).clamp_min(0)
        lab = (yt[:, None] - yt[None, :]).abs()
        u = torch.log(d + eps) - torch.log(lab + eps)
        r = u[:, :, None] - u[:, None, :]  # (B, B, B)
        loss = torch.where(pair, r * r, 0.0).sum() / count
        loss.backward()
        return loss.detach(), f.grad

    return run


def triplets_miner_setup(batch: int) -> Callable[[], Any]:
    """The loss on the explicit list of every triplet (``dense_triplets``), autograd through it."""
    import torch

    import logratio

    emb, y = make_inputs(batch, ARGS.dim)
    f = torch.from_numpy(emb).requires_grad_(True)
    dl = np.abs(y[:, None] - y[None, :])
    trip = tuple(torch.as_tensor(np.asarray(t)) for t in logratio.dense_triplets(dl))
    dlt = torch.from_numpy(dl)

    def run() -> Any:
        f.grad = None
        loss = logratio.triplet_log_ratio_loss(f, dlt, trip)
        loss.backward()
        return loss.detach(), f.grad

    return run


def available_configs() -> list[Config]:
    """The configurations this machine can run, the floor first."""
    configs = [Config("cdist", cdist_setup("cpu"))]
    wanted = set(ARGS.backends)
    mem_cap = ARGS.memory_cap_gib * GiB
    if "numpy" in wanted:
        configs.append(Config("numpy", numpy_setup))
    if "torch" in wanted:
        configs.append(Config("torch", torch_setup("cpu")))
        cap = max(b for b in FULL_SIZES if autograd_bytes(b) <= mem_cap)
        configs.append(Config("torch-autograd", torch_setup("cpu", True), max_batch=cap))
    if "torch-compile" in wanted and _has_compiler():
        configs.append(Config("torch-compile", torch_compile_setup))
    if "jax" in wanted and _importable("jax"):
        configs.append(Config("jax", jax_setup("cpu")))
    if "triplets" in wanted:
        cap = max(b for b in FULL_SIZES if materialised_bytes(b) <= mem_cap)
        configs.append(Config("triplets-dense", triplets_dense_setup, max_batch=cap))
        cap = max((b for b in FULL_SIZES if miner_bytes(b, ARGS.dim) <= mem_cap), default=0)
        configs.append(Config("triplets-miner", triplets_miner_setup, max_batch=cap))
    if _cuda_available():
        configs.append(Config("cdist-cuda", cdist_setup("cuda")))
        if "torch" in wanted:
            configs.append(Config("torch-cuda", torch_setup("cuda")))
    if "jax" in wanted and _jax_gpu_available():
        configs.append(Config("jax-gpu", jax_setup("gpu")))
    if "cupy" in wanted and _cupy_available():
        configs.append(Config("cupy", cupy_setup))
    return configs


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def _has_compiler() -> bool:
    import shutil

    return any(shutil.which(c) for c in ("cc", "gcc", "clang", "g++"))


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _jax_gpu_available() -> bool:
    try:
        import jax

        return bool(jax.devices("gpu"))
    except Exception:
        return False


def _cupy_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    name: str
    batch: int
    times_s: list[float] = field(default_factory=list)
    skipped: str | None = None
    load: float | None = None  # 1-minute load average of the machine after the timings
    rerun_times_s: list[float] | None = None  # the floor's second run

    @property
    def median_s(self) -> float | None:
        runs = [r for r in (self.times_s, self.rerun_times_s) if r]
        return min(statistics.median(r) for r in runs) if runs else None


def time_child(name: str, sizes: list[int]) -> None:
    """Time one configuration at every B in this (fresh) process; one JSON line per B.

    Each framework runs alone in its process: the worker threads of another (OpenBLAS, the
    OpenMP pool of PyTorch, XLA's) spin for a while after each call and would steal the
    cores from it.  A call that raises ``MemoryError`` ends the sizes for this one.
    """
    config = {c.name: c for c in available_configs()}[name]
    budget = ARGS.seconds_per_config
    for batch in sizes:
        t = Timing(name, batch)
        try:
            run = config.setup(batch)
            for _ in range(ARGS.warmup):
                run()
            for rep in range(ARGS.repeats):
                if rep >= 3 and sum(t.times_s) > budget:  # the median of 3 past a few seconds
                    break
                start = time.perf_counter()
                run()
                t.times_s.append(time.perf_counter() - start)
        except MemoryError as err:
            t.skipped = f"out of memory: {err}"
        run = None
        gc.collect()
        print(json.dumps({**asdict(t), "load": os.getloadavg()[0]}), flush=True)
        if t.skipped:
            break


def busy_fraction(seconds: float = 1.0) -> float:
    """Fraction of the machine's CPU time spent on something else over ``seconds``."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            vals = [int(x) for x in fh.readline().split()[1:]]
        return sum(vals), vals[3] + vals[4]  # total, idle + iowait

    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def wait_until_idle(limit_s: float) -> float:
    """Wait (up to ``limit_s``) until other processes leave the CPUs alone; the busy fraction.

    Timings on a 2-core machine shared with other work swing by 2-20×: the worker threads of
    every framework wait on each other whenever one core is taken away.
    """
    deadline = time.time() + limit_s
    busy = busy_fraction()
    while busy > 0.1 and time.time() < deadline:
        time.sleep(4)
        busy = busy_fraction()
    return busy


def time_config(config: Config, sizes: list[int]) -> list[Timing]:
    """Run :func:`time_child` for one configuration in a subprocess; its timings per B."""
    busy = wait_until_idle(ARGS.wait_idle)
    print(f"{config.name}: machine {100 * busy:.0f}% busy before starting", flush=True)
    todo = [b for b in sizes if config.max_batch is None or b <= config.max_batch]
    out = [Timing(config.name, b, skipped=f"B > {config.max_batch} (memory cap)") for b in sizes]
    by_batch = {t.batch: t for t in out}
    if not todo:
        return out
    cmd = [sys.executable, str(Path(__file__).resolve()), "--time-child", config.name]
    cmd += ["--sizes", ",".join(map(str, todo)), "--repeats", str(ARGS.repeats)]
    cmd += ["--warmup", str(ARGS.warmup), "--seconds-per-config", str(ARGS.seconds_per_config)]
    cmd += _forwarded_args()
    # stderr to a file: a pipe that nobody reads fills up with warnings and blocks the child
    err_file = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, text=True)
    for line in proc.stdout:
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        t = by_batch[rec["batch"]]
        t.times_s, t.skipped, t.load = rec["times_s"], rec["skipped"], rec["load"]
        shown = t.skipped or _fmt_time(t.median_s)
        print(f"  {config.name:15s} B={t.batch:6d}: {shown}   (load {t.load:.2f})", flush=True)
    proc.wait()
    err_file.seek(0)
    err = err_file.read()
    err_file.close()
    if proc.returncode != 0:
        tail = err.strip().splitlines()[-1:] or [""]
        for t in out:
            if not t.times_s and not t.skipped:
                t.skipped = f"failed ({proc.returncode}): {tail[0]}"
    return out


# --------------------------------------------------------------------------- memory


def memory_child(name: str, batch: int) -> dict[str, Any]:
    """Run one configuration twice in this (fresh) process; report the second call's peak.

    The first call pays for one-off allocations (library buffers, JAX compilation).  Then the
    C allocator returns its free memory to the system (``malloc_trim``, else the second call
    would reuse pages that are already resident and look free of cost), the kernel's
    resident-set high-water mark is reset (``/proc/self/clear_refs``), and the second call's
    peak above the resident set before it is the working memory of one evaluation.
    """
    configs = {c.name: c for c in available_configs()}
    run = configs[name].setup(batch)
    run()
    gc.collect()
    _malloc_trim()
    result: dict[str, Any] = {"name": name, "batch": batch}
    if name == "numpy":
        import tracemalloc

        tracemalloc.start()
        run()
        result["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        gc.collect()
    if name.endswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        result["device_peak_bytes"] = torch.cuda.max_memory_allocated() - base
    elif name == "cupy":
        import cupy

        pool = cupy.get_default_memory_pool()
        pool.free_all_blocks()
        base = pool.total_bytes()
        run()
        result["device_peak_bytes"] = pool.total_bytes() - base
    elif name == "jax-gpu":
        import jax

        run()
        stats = jax.devices("gpu")[0].memory_stats() or {}
        result["device_peak_bytes"] = stats.get("peak_bytes_in_use")
    else:
        baseline = _status_kib("VmRSS") * 1024
        with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current RSS
            fh.write("5")
        run()
        peak = _status_kib("VmHWM") * 1024
        result["baseline_rss_bytes"] = baseline
        result["peak_rss_bytes"] = peak
        result["rss_delta_bytes"] = peak - baseline
    return result


def _malloc_trim() -> None:
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


#: The environment of the working-set measurements: every large block gets its own mapping
#: and goes back to the system when freed, so the resident set follows the live arrays.
#: With glibc's default, adaptive threshold the resident high-water mark of PyTorch also
#: holds freed heap memory, and varied from 0.15 to 1.3 GB between identical runs at
#: B = 12288 (a working set of 0.12 GB).
WORKING_SET_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def measure_memory(
    name: str, batch: int, timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", f"{name}:{batch}"]
    cmd += _forwarded_args()
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, env=full_env
        )
    except subprocess.TimeoutExpired:
        return {"name": name, "batch": batch, "skipped": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        return {"name": name, "batch": batch, "skipped": f"failed ({proc.returncode}): {tail[0]}"}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "env": env or {}}


def _forwarded_args() -> list[str]:
    return ["--dim", str(ARGS.dim), "--memory-cap-gib", str(ARGS.memory_cap_gib)]


# --------------------------------------------------------------------------- checks


def blocked_equals_unblocked(batch: int) -> dict[str, Any]:
    """Max relative difference between the default blocks and one block, loss and gradient."""
    import torch

    import logratio

    emb, y = make_inputs(batch, ARGS.dim)
    out: dict[str, Any] = {"batch": batch}
    for name, arr, lab in (
        ("numpy", emb, y),
        ("torch", torch.from_numpy(emb), torch.from_numpy(y)),
    ):
        l0, g0 = logratio.log_ratio_loss_and_grad(arr, lab, block_size=batch)
        l1, g1 = logratio.log_ratio_loss_and_grad(arr, lab, block_size=max(1, batch // 7))
        l0, g0, l1, g1 = (np.asarray(x, dtype=np.float64) for x in (l0, g0, l1, g1))
        out[name] = {
            "loss_rel_diff": float(abs(l1 - l0) / abs(l0)),
            "grad_rel_diff": float(np.max(np.abs(g1 - g0)) / np.max(np.abs(g0))),
        }
    return out


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "env": {k: os.environ.get(k) for k in _ENV_KEYS if os.environ.get(k) is not None},
    }
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in _LSCPU_KEYS:
                info[key.strip()] = value.strip()
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            info["mem_total_kib"] = int(fh.readline().split()[1])
    except OSError:
        pass
    versions = {"numpy": np.__version__}
    for mod in ("torch", "jax", "jaxlib", "cupy", "array_api_compat"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    info["versions"] = versions
    try:
        import threadpoolctl

        info["threadpools"] = [
            {k: p.get(k) for k in ("internal_api", "architecture", "num_threads", "version")}
            for p in threadpoolctl.threadpool_info()
        ]
    except ImportError:
        pass
    if _cuda_available():
        import torch

        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


_LSCPU_KEYS = ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache")
_ENV_KEYS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "XLA_FLAGS",
)


# --------------------------------------------------------------------------- report


def ratio(timings: dict[tuple[str, int], Timing], name: str, ref: str, batch: int) -> float | None:
    a, b = timings.get((name, batch)), timings.get((ref, batch))
    if a is None or b is None or a.median_s is None or b.median_s is None:
        return None
    return a.median_s / b.median_s


def evaluate_targets(
    timings: dict[tuple[str, int], Timing],
    memory: list[dict[str, Any]],
    resident: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value, its limit and whether it holds."""
    out = []

    def add(name: str, value: float | None, limit: float, at_most: bool) -> None:
        met = None if value is None else (value <= limit if at_most else value >= limit)
        out.append({"target": name, "value": value, "limit": limit, "met": met})

    for b in (2048, 4096):
        add(f"torch / cdist at B={b} (<= 5)", ratio(timings, "torch", "cdist", b), 5, True)
    add(
        "materialised triplets / torch at B=512 (>= 100)",
        ratio(timings, "triplets-dense", "torch", 512),
        100,
        False,
    )
    for b in (2048, 4096):
        add(
            f"torch autograd / closed form at B={b} (>= 2)",
            ratio(timings, "torch-autograd", "torch", b),
            2,
            False,
        )
        add(f"jax / torch at B={b} (<= 1.5)", ratio(timings, "jax", "torch", b), 1.5, True)
        add(f"numpy / torch at B={b} (<= 2)", ratio(timings, "numpy", "torch", b), 2, True)
    peak = {(m["name"], m["batch"]): m.get("rss_delta_bytes") for m in memory}
    rss = [m["peak_rss_bytes"] for m in resident if m.get("peak_rss_bytes")]
    add(
        f"torch process peak RSS at B={TARGET_BATCH}, GiB, worst of {len(rss)} (< 3)",
        max(rss) / GiB if rss else None,
        3,
        True,
    )
    work = peak.get(("torch", TARGET_BATCH))
    add(
        f"torch working set at B={TARGET_BATCH}, GiB (< 3)",
        None if work is None else work / GiB,
        3,
        True,
    )
    for b in (2048, 4096):
        a, c = peak.get(("torch-autograd", b)), peak.get(("torch", b))
        add(
            f"torch autograd / closed-form peak memory at B={b} (> 1)",
            None if a is None or c is None else a / c,
            1,
            False,
        )
    return out


def markdown(result: dict[str, Any]) -> str:
    timings = result["time"]
    names = [n for n in DESCRIPTIONS if any(t["name"] == n for t in timings)]
    sizes = sorted({t["batch"] for t in timings})
    by = {(t["name"], t["batch"]): t for t in timings}
    lines = ["| B | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for b in sizes:
        floor = by.get(("cdist", b), {}).get("median_s")
        cells = []
        for n in names:
            t = by.get((n, b))
            if t is None or t.get("median_s") is None:
                cells.append("—")
            elif n == "cdist":
                cells.append(_fmt_time(t["median_s"]))
            else:
                r = t["median_s"] / floor if floor else float("nan")
                cells.append(f"{_fmt_time(t['median_s'])} ({r:.1f}×)")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    m = result["machine"]
    v = m.get("versions", {})
    loads = [t["load"] for t in timings if t.get("load") is not None]
    out = [
        f"Machine: {m.get('Model name', '?')}, {m.get('cpu_count')} cores; "
        + ", ".join(f"{k} {v[k]}" for k in ("numpy", "torch", "jax") if k in v)
        + (
            f"; 1-minute load average {min(loads):.2f}–{max(loads):.2f} while timing"
            if loads
            else ""
        )
        + ".",
        "",
        "Median time of loss + gradient (ratio to `torch.cdist(F, F)` at the same B),"
        f" float32, d = {result['config']['dim']}, scalar labels:",
        "",
        *lines,
        "",
    ]
    mem = [m for m in result["memory"] if "rss_delta_bytes" in m or "device_peak_bytes" in m]
    if mem:
        mnames = [n for n in DESCRIPTIONS if any(m["name"] == n for m in mem)]
        msizes = sorted({m["batch"] for m in mem})
        mby = {(m["name"], m["batch"]): m for m in mem}
        out += [
            "Working memory of one loss + gradient: peak resident set above the process's"
            " baseline, large blocks mapped one by one (`MALLOC_MMAP_THRESHOLD_`);"
            " `tracemalloc` for NumPy in brackets:",
            "",
            "| B | " + " | ".join(mnames) + " |",
            "|---" * (len(mnames) + 1) + "|",
        ]
        for b in msizes:
            cells = []
            for n in mnames:
                m = mby.get((n, b))
                if m is None:
                    cells.append("—")
                    continue
                v = m.get("device_peak_bytes", m.get("rss_delta_bytes"))
                cell = _fmt_bytes(v)
                if "tracemalloc_peak_bytes" in m:
                    cell += f" [{_fmt_bytes(m['tracemalloc_peak_bytes'])}]"
                cells.append(cell)
            out.append(f"| {b} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["Targets:", "", "| target | measured | met |", "|---|---|---|"]
    for t in result["targets"]:
        v = "—" if t["value"] is None else f"{t['value']:.2f}"
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        out.append(f"| {t['target']} | {v} | {met} |")
    return "\n".join(out) + "\n"


def _fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def _fmt_bytes(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= GiB:
        return f"{v / GiB:.2f} GiB"
    return f"{v / (1 << 20):.0f} MiB"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_r, ax_m) = plt.subplots(1, 3, figsize=(19, 5.6))
    palette = plt.get_cmap("tab10").colors
    styles = {n: dict(color=palette[i % len(palette)]) for i, n in enumerate(DESCRIPTIONS)}
    styles["cdist"] = dict(color="black", linestyle="--", linewidth=2)
    floor = {
        t["batch"]: t["median_s"]
        for t in result["time"]
        if t["name"] == "cdist" and t.get("median_s") is not None
    }
    for name in DESCRIPTIONS:
        pts = sorted(
            (t["batch"], t["median_s"])
            for t in result["time"]
            if t["name"] == name and t.get("median_s") is not None
        )
        if pts:
            b, s = zip(*pts, strict=True)
            label = f"{name}: {DESCRIPTIONS[name]}"
            ax_t.plot(b, s, marker="o", label=label, **styles.get(name, {}))
            rel = [(bb, ss / floor[bb]) for bb, ss in pts if bb in floor]
            if rel and name not in ("cdist", "cdist-cuda"):
                rb, rs = zip(*rel, strict=True)
                ax_r.plot(rb, rs, marker="o", label=name, **styles[name])
        mem = sorted(
            (m["batch"], m.get("device_peak_bytes") or m.get("rss_delta_bytes"))
            for m in result["memory"]
            if m["name"] == name and (m.get("device_peak_bytes") or m.get("rss_delta_bytes"))
        )
        if mem:
            b, v = zip(*mem, strict=True)
            ax_m.plot(b, [x / GiB for x in v], marker="o", label=name, **styles.get(name, {}))
    sizes = sorted({t["batch"] for t in result["time"]})
    if sizes:
        b = np.array(sizes, dtype=float)
        ax_m.plot(b, 4 * b * b / GiB, color="grey", linestyle=":", label="one B×B float32 matrix")
        ax_r.axhline(5, color="grey", linestyle=":", label="5× (target at B = 2048, 4096)")
    panels = (
        (ax_t, "median time of loss + gradient [s]"),
        (ax_r, "time / torch.cdist(F, F) at the same B"),
        (ax_m, "working memory [GiB]"),
    )
    for ax, ylabel in panels:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size B (d = 128, float32)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    for ax in (ax_t, ax_r, ax_m):
        ax.legend(fontsize=7, loc="upper left")
    cpu = result["machine"].get("Model name", platform.processor())
    fig.suptitle(f"Dense log-ratio loss vs B — {cpu}, {result['machine'].get('cpu_count')} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="B up to 2048, fewer repeats")
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument(
        "--backends",
        type=lambda s: s.split(","),
        default=None,
        help="comma-separated subset of numpy,torch,torch-compile,jax,cupy,triplets "
        "(default: all; --quick leaves out torch-compile, whose compilation takes seconds)",
    )
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per configuration")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--seconds-per-config", type=float, default=20.0)
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=None,
        help="seconds to wait for the CPUs to be idle before each configuration "
        "(default 300, 0 with --quick)",
    )
    ap.add_argument("--memory-sizes", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-cap-gib", type=float, default=6.0, help="skip configs above this")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--time-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument(
        "--replot", type=Path, default=None, help="only redraw the table and plot of a JSON"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global ARGS
    ARGS = parse_args(argv)
    if ARGS.backends is None:
        ARGS.backends = ["numpy", "torch", "jax", "cupy", "triplets"]
        if not ARGS.quick:
            ARGS.backends.append("torch-compile")
    if ARGS.replot:
        result = json.loads(ARGS.replot.read_text())
        stem = ARGS.replot.stem
        (ARGS.replot.parent / f"{stem}.md").write_text(markdown(result))
        plot(result, ARGS.replot.parent / (stem.replace("results", "benchmark", 1) + ".png"))
        return 0
    sizes = ARGS.sizes or (QUICK_SIZES if ARGS.quick else FULL_SIZES)
    ARGS.repeats = ARGS.repeats or (3 if ARGS.quick else 7)
    if ARGS.wait_idle is None:
        ARGS.wait_idle = 0.0 if ARGS.quick else 300.0
    if ARGS.memory_child:
        name, batch = ARGS.memory_child.rsplit(":", 1)
        print(json.dumps(memory_child(name, int(batch))))
        return 0
    if ARGS.time_child:
        time_child(ARGS.time_child, sizes)
        return 0
    mem_sizes = ARGS.memory_sizes or [b for b in sizes if b >= 256]
    configs = available_configs()
    print("configurations:", ", ".join(c.name for c in configs), flush=True)
    started = time.time()
    timings: dict[tuple[str, int], Timing] = {}
    for c in configs:
        for t in time_config(c, sizes):
            timings[(t.name, t.batch)] = t
    # the floor once more at the end: the lower median of the two runs is the floor, so that
    # a burst of load on the machine during one of them does not flatter the ratios
    for name in ("cdist", "cdist-cuda"):
        if any(n == name for n, _ in timings):
            again = {t.batch: t for t in time_config(Config(name, None), sizes)}
            for b in sizes:
                first, second = timings.get((name, b)), again.get(b)
                if first and second and second.median_s is not None:
                    first.rerun_times_s = second.times_s
    memory: list[dict[str, Any]] = []
    resident: list[dict[str, Any]] = []
    if not ARGS.no_memory:
        for b in mem_sizes:
            for c in configs:
                if c.max_batch is not None and b > c.max_batch:
                    continue
                if c.name in ("cdist", "cdist-cuda", "torch-compile"):
                    continue
                m = measure_memory(c.name, b, timeout=900, env=WORKING_SET_ENV)
                memory.append(m)
                shown = m.get("device_peak_bytes", m.get("rss_delta_bytes"))
                print(f"memory {c.name} B={b}: {m.get('skipped') or _fmt_bytes(shown)}", flush=True)
        # the resident peak as a user sees it (default allocator), where the target is set
        if "torch" in ARGS.backends and TARGET_BATCH in mem_sizes:
            for _ in range(3):
                m = measure_memory("torch", TARGET_BATCH, timeout=900)
                resident.append(m)
                peak = m.get("peak_rss_bytes")
                print(f"resident peak torch B={TARGET_BATCH}: {_fmt_bytes(peak)}", flush=True)
    check_b = min(2048, max(sizes))
    result = {
        "machine": machine_info(),
        "config": {
            "dim": ARGS.dim,
            "dtype": "float32",
            "labels": "scalar, uniform in [0, 10), label_metric='euclidean'",
            "repeats": ARGS.repeats,
            "warmup": ARGS.warmup,
            "quick": ARGS.quick,
            "descriptions": DESCRIPTIONS,
        },
        "time": [{**asdict(t), "median_s": t.median_s} for t in timings.values()],
        "memory": memory,
        "memory_default_allocator": resident,
        "blocked_vs_unblocked": blocked_equals_unblocked(check_b),
        "seconds": time.time() - started,
    }
    result["targets"] = evaluate_targets(timings, memory, resident)
    ARGS.out.mkdir(parents=True, exist_ok=True)
    stem = "results-quick" if ARGS.quick else "results"
    (ARGS.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    md = markdown(result)
    (ARGS.out / f"{stem}.md").write_text(md)
    plot(result, ARGS.out / ("benchmark-quick.png" if ARGS.quick else "benchmark.png"))
    print(md)
    print(f"written under {ARGS.out}: {stem}.json, {stem}.md, the plot; {result['seconds']:.0f} s")
    return 0


ARGS = parse_args([])

if __name__ == "__main__":
    sys.exit(main())
