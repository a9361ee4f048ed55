"""One benchmark run from start to end: every configuration's timings, memory, the record.

The order: every configuration timed in turn, the floor first and timed again last (the lower
median counts, so that a burst of load during one of its runs does not flatter the ratios);
then the working memory of each configuration at each memory size, and the resident peak
of the PyTorch adapter as a user sees it.  :func:`run_suite` returns the results record
that :mod:`report` writes and reads.
"""

from __future__ import annotations

import time
from typing import Any

from cases import DESCRIPTIONS, Case, available_cases, blocked_equals_unblocked
from harness import WORKING_SET_ENV, Timing, machine_info, measure_memory, time_case
from report import evaluate_targets, fmt_bytes
from settings import TARGET_BATCH, Settings

FLOORS = ("cdist", "cdist-cuda")
#: Configurations without a memory measurement: the floors, and the near-pair cases (the
#: same working set as their plain counterparts, plus O(pairs · d)).
NO_MEMORY = (*FLOORS, "numpy-near", "torch-near", "jax-near")


def time_all(cases: list[Case], settings: Settings) -> list[Timing]:
    """Every configuration at every B; the floors twice."""
    timings: dict[tuple[str, int], Timing] = {}
    for c in cases:
        for t in time_case(c, settings):
            timings[(t.name, t.batch)] = t
    for c in cases:
        if c.name in FLOORS:
            for second in time_case(c, settings):
                first = timings.get((c.name, second.batch))
                if first and second.median_s is not None:
                    first.rerun_times_s = second.times_s
    return list(timings.values())


def measure_all(
    cases: list[Case], settings: Settings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Working memory of each configuration at each memory size; the torch resident peaks."""
    memory: list[dict[str, Any]] = []
    resident: list[dict[str, Any]] = []
    for b in settings.memory_sizes:
        for c in cases:
            if (c.max_batch is not None and b > c.max_batch) or c.name in NO_MEMORY:
                continue
            m = measure_memory(c.name, b, settings, timeout=900, env=WORKING_SET_ENV)
            memory.append(m)
            shown = m.get("device_peak_bytes", m.get("rss_delta_bytes"))
            print(f"memory {c.name} B={b}: {m.get('skipped') or fmt_bytes(shown)}", flush=True)
    # the resident peak as a user sees it (default allocator), where the target is set
    if "torch" in settings.backends and TARGET_BATCH in settings.memory_sizes:
        for _ in range(3):
            m = measure_memory("torch", TARGET_BATCH, settings, timeout=900)
            resident.append(m)
            peak = m.get("peak_rss_bytes")
            print(f"resident peak torch B={TARGET_BATCH}: {fmt_bytes(peak)}", flush=True)
    return memory, resident


def run_suite(settings: Settings) -> dict[str, Any]:
    """Measure everything ``settings`` asks for; the results record."""
    cases = available_cases(settings)
    print("configurations:", ", ".join(c.name for c in cases), flush=True)
    started = time.time()
    timings = time_all(cases, settings)
    memory, resident = measure_all(cases, settings) if settings.measure_memory else ([], [])
    time_records = [t.record() for t in timings]
    result = {
        "machine": machine_info(),
        "config": {
            "dim": settings.dim,
            "dtype": "float32",
            "labels": "scalar, uniform in [0, 10), label_metric='euclidean'",
            "repeats": settings.repeats,
            "warmup": settings.warmup,
            "quick": settings.quick,
            "descriptions": DESCRIPTIONS,
        },
        "time": time_records,
        "memory": memory,
        "memory_default_allocator": resident,
        "blocked_vs_unblocked": blocked_equals_unblocked(
            min(2048, max(settings.sizes)), settings.dim
        ),
        "seconds": time.time() - started,
    }
    result["targets"] = evaluate_targets(time_records, memory, resident)
    return result
