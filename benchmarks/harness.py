"""How the benchmarks measure: one subprocess per configuration, idle CPUs, medians, peaks.

Each configuration runs in its own subprocess (the worker threads of one framework would
otherwise spin on the cores another one needs), after waiting for the machine to be idle.
The parent (:func:`time_case`, :func:`measure_memory`) starts ``run.py`` with a hidden flag;
the child (:func:`time_child`, :func:`memory_child`) prints its measurements as JSON lines.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cases import Case, available_cases
from report import fmt_time
from settings import Settings

RUN_SCRIPT = Path(__file__).resolve().with_name("run.py")

#: The environment of the working-set measurements: every large block gets its own mapping
#: and goes back to the system when freed, so the resident set follows the live arrays.
#: With glibc's default, adaptive threshold the resident high-water mark of PyTorch also
#: holds freed heap memory, and varied from 0.15 to 1.3 GB between identical runs at
#: B = 12288 (a working set of 0.12 GB).
WORKING_SET_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    name: str
    batch: int
    times_s: list[float] = field(default_factory=list)
    skipped: str | None = None
    load: float | None = None  # 1-minute load average of the machine after the timings
    rerun_times_s: list[float] | None = None  # the floor's second run
    # the first call at the first B of the process: imports, JIT compilation, allocations
    first_s: float | None = None

    @property
    def median_s(self) -> float | None:
        runs = [r for r in (self.times_s, self.rerun_times_s) if r]
        return min(statistics.median(r) for r in runs) if runs else None

    def record(self) -> dict[str, Any]:
        """The JSON record of the results file."""
        return {**asdict(self), "median_s": self.median_s}


def _case(name: str, settings: Settings) -> Case:
    return {c.name: c for c in available_cases(settings)}[name]


def time_child(name: str, settings: Settings) -> None:
    """Time one configuration at every B of ``settings`` in this (fresh) process.

    Prints one JSON line per B.  Each framework runs alone in its process: the worker threads
    of another (OpenBLAS, the OpenMP pool of PyTorch, XLA's) spin for a while after each call
    and would steal the cores from it.  A call that raises ``MemoryError`` ends the sizes.
    """
    case = _case(name, settings)
    for batch in settings.sizes:
        t = Timing(name, batch)
        try:
            run = case.setup(batch, settings.dim)
            start = time.perf_counter()
            run()  # the first call at this B; at the first B it pays every one-off cost
            t.first_s = time.perf_counter() - start
            for _ in range(settings.warmup):
                run()
            for rep in range(settings.repeats):
                # the median of 3 past a few seconds
                if rep >= 3 and sum(t.times_s) > settings.seconds_per_config:
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


def time_case(case: Case, settings: Settings) -> list[Timing]:
    """Run :func:`time_child` for one configuration in a subprocess; its timings per B."""
    busy = wait_until_idle(settings.wait_idle)
    print(f"{case.name}: machine {100 * busy:.0f}% busy before starting", flush=True)
    sizes = settings.sizes
    todo = [b for b in sizes if case.max_batch is None or b <= case.max_batch]
    out = [Timing(case.name, b, skipped=f"B > {case.max_batch} (memory cap)") for b in sizes]
    by_batch = {t.batch: t for t in out}
    if not todo:
        return out
    cmd = [sys.executable, str(RUN_SCRIPT), "--time-child", case.name]
    cmd += settings.child_argv(sizes=todo)
    # stderr to a file: a pipe that nobody reads fills up with warnings and blocks the child
    with tempfile.TemporaryFile(mode="w+") as err_file:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, text=True)
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            t = by_batch[rec["batch"]]
            t.times_s, t.skipped, t.load = rec["times_s"], rec["skipped"], rec["load"]
            t.first_s = rec.get("first_s")
            shown = t.skipped or fmt_time(t.median_s)
            print(f"  {case.name:15s} B={t.batch:6d}: {shown}   (load {t.load:.2f})", flush=True)
        proc.wait()
        err_file.seek(0)
        err = err_file.read()
    if proc.returncode != 0:
        tail = err.strip().splitlines()[-1:] or [""]
        for t in out:
            if not t.times_s and not t.skipped:
                t.skipped = f"failed ({proc.returncode}): {tail[0]}"
    return out


# --------------------------------------------------------------------------- memory


def memory_child(name: str, batch: int, settings: Settings) -> dict[str, Any]:
    """Run one configuration twice in this (fresh) process; report the second call's peak.

    The first call pays for one-off allocations (library buffers, JAX compilation).  Then the
    C allocator returns its free memory to the system (``malloc_trim``, else the second call
    would reuse pages that are already resident and look free of cost), the kernel's
    resident-set high-water mark is reset (``/proc/self/clear_refs``), and the second call's
    peak above the resident set before it is the working memory of one evaluation.
    """
    run = _case(name, settings).setup(batch, settings.dim)
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


def measure_memory(
    name: str,
    batch: int,
    settings: Settings,
    timeout: float,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run :func:`memory_child` in a subprocess (with ``env`` added); its record."""
    cmd = [sys.executable, str(RUN_SCRIPT), "--memory-child", f"{name}:{batch}"]
    cmd += settings.child_argv()
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


# --------------------------------------------------------------------------- the machine

_LSCPU_KEYS = ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache")
_ENV_KEYS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "XLA_FLAGS",
)


def machine_info() -> dict[str, Any]:
    """CPU, memory, library versions and thread pools of this machine, and its CUDA device."""
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
    try:
        import torch

        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info
