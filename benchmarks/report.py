"""What the benchmarks report: the targets, the markdown tables and the plot of a results record.

Everything here reads the results record as it is written to (and read back from) the JSON
file, so ``--replot`` redraws a committed run exactly as the run itself drew it.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
from cases import DESCRIPTIONS
from settings import TARGET_BATCH, GiB

#: One colour per configuration, the same in every panel and every plot (floors dashed).
STYLES: dict[str, dict[str, Any]] = {
    "cdist": {"color": "black", "linestyle": "--", "linewidth": 2},
    "numpy": {"color": "#ff7f0e"},
    "torch": {"color": "#2ca02c"},
    "torch-autograd": {"color": "#d62728"},
    "torch-compiled": {"color": "#9467bd"},
    "jax": {"color": "#8c564b"},
    "cupy": {"color": "#e377c2"},
    "cdist-cuda": {"color": "#555555", "linestyle": "--", "linewidth": 2},
    "torch-cuda": {"color": "#bcbd22"},
    "torch-cuda-compiled": {"color": "#aec7e8"},
    "jax-gpu": {"color": "#7b4173"},
    "numpy-near": {"color": "#ff7f0e", "linestyle": ":"},
    "torch-near": {"color": "#2ca02c", "linestyle": ":"},
    "jax-near": {"color": "#8c564b", "linestyle": ":"},
    "triplets-dense": {"color": "#1f77b4"},
    "triplets-miner": {"color": "#17becf"},
    "peer-eager": {"color": "#7f7f7f", "linestyle": "-."},
    "peer-compiled": {"color": "#c49c94", "linestyle": "-."},
}
assert set(STYLES) == set(DESCRIPTIONS), "every configuration needs a style"
assert len({(s["color"], s.get("linestyle")) for s in STYLES.values()}) == len(STYLES), (
    "styles must differ"
)


# --------------------------------------------------------------------------- targets


def ratio(
    by: dict[tuple[str, int], dict[str, Any]], name: str, ref: str, batch: int
) -> float | None:
    a, b = by.get((name, batch)), by.get((ref, batch))
    if a is None or b is None or a.get("median_s") is None or b.get("median_s") is None:
        return None
    return a["median_s"] / b["median_s"]


def evaluate_targets(
    timings: list[dict[str, Any]],
    memory: list[dict[str, Any]],
    resident: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value, its limit and whether it holds."""
    by = {(t["name"], t["batch"]): t for t in timings}
    out = []

    def add(name: str, value: float | None, limit: float, at_most: bool) -> None:
        met = None if value is None else (value <= limit if at_most else value >= limit)
        out.append({"target": name, "value": value, "limit": limit, "met": met})

    # the default call against the floor: <= 4x at B = 2048, <= 3x from 4096 to 16384
    for name in ("torch", "jax"):
        for b in (2048, 4096, 8192, 12288, 16384):
            limit = 4 if b == 2048 else 3
            add(f"{name} / cdist at B={b} (<= {limit})", ratio(by, name, "cdist", b), limit, True)
    for b in (2048, 4096, 8192, 16384):
        add(f"numpy / cdist at B={b} (<= 6)", ratio(by, "numpy", "cdist", b), 6, True)
    # the default call against the faster of the ten-line peers, at every batch size
    for b in sorted({t["batch"] for t in timings}):
        named = (by.get(("peer-eager", b)), by.get(("peer-compiled", b)))
        peers = [x["median_s"] for x in named if x and x.get("median_s")]
        ours = by.get(("torch", b), {}).get("median_s")
        if peers and ours:
            value = ours / min(peers)
            add(f"torch / faster peer at B={b} (<= 1)", value, 1, True)
    add(
        "materialised triplets / torch at B=512 (>= 100)",
        ratio(by, "triplets-dense", "torch", 512),
        100,
        False,
    )
    for b in (2048, 4096):
        add(
            f"torch autograd / closed form at B={b} (>= 2)",
            ratio(by, "torch-autograd", "torch", b),
            2,
            False,
        )
    peak = {(m["name"], m["batch"]): m.get("rss_delta_bytes") for m in memory}
    rss = [m["peak_rss_bytes"] for m in resident if m.get("peak_rss_bytes")]
    add(
        f"torch process peak RSS at B={TARGET_BATCH}, GiB, worst of {len(rss)} (< 3)",
        max(rss) / GiB if rss else None,
        3,
        True,
    )
    for name in ("torch", "jax"):
        work = peak.get((name, TARGET_BATCH))
        add(
            f"{name} working set at B={TARGET_BATCH}, GiB (< 3)",
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


# --------------------------------------------------------------------------- tables


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_bytes(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= GiB:
        return f"{v / GiB:.2f} GiB"
    return f"{v / (1 << 20):.0f} MiB"


def _table(names: list[str], rows: list[tuple[int, list[str]]]) -> list[str]:
    """A markdown table: a column B, then one per name; ``rows`` are (B, cells)."""
    lines = ["| B | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    return lines + [f"| {b} | " + " | ".join(cells) + " |" for b, cells in rows]


def _time_cell(name: str, t: dict[str, Any] | None, floor: float | None) -> str:
    if t is None or t.get("median_s") is None:
        return "—"
    if name == "cdist":
        return fmt_time(t["median_s"])
    r = t["median_s"] / floor if floor else float("nan")
    return f"{fmt_time(t['median_s'])} ({r:.1f}×)"


def _memory_cell(m: dict[str, Any] | None) -> str:
    if m is None:
        return "—"
    cell = fmt_bytes(m.get("device_peak_bytes", m.get("rss_delta_bytes")))
    if "tracemalloc_peak_bytes" in m:
        cell += f" [{fmt_bytes(m['tracemalloc_peak_bytes'])}]"
    return cell


def markdown(result: dict[str, Any]) -> str:
    """The tables of time, working memory and targets of one results record."""
    timings = result["time"]
    names = [n for n in DESCRIPTIONS if any(t["name"] == n for t in timings)]
    by = {(t["name"], t["batch"]): t for t in timings}
    rows = []
    for b in sorted({t["batch"] for t in timings}):
        floor = by.get(("cdist", b), {}).get("median_s")
        rows.append((b, [_time_cell(n, by.get((n, b)), floor) for n in names]))
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
        *_table(names, rows),
        "",
    ]
    first = {}
    for t in sorted(timings, key=lambda t: t["batch"]):
        if t.get("first_s") is not None and t["name"] not in first:
            first[t["name"]] = (t["batch"], t["first_s"], t.get("median_s"))
    if first:
        out += [
            "First call of each configuration's process (imports, compilation, allocations)"
            " against the steady state at the same B:",
            "",
            "| configuration | B | first call | steady state |",
            "|---|---|---|---|",
            *(
                f"| {n} | {b} | {fmt_time(f)} | {fmt_time(m) if m else '—'} |"
                for n, (b, f, m) in first.items()
            ),
            "",
        ]
    mem = [m for m in result["memory"] if "rss_delta_bytes" in m or "device_peak_bytes" in m]
    if mem:
        mnames = [n for n in DESCRIPTIONS if any(m["name"] == n for m in mem)]
        mby = {(m["name"], m["batch"]): m for m in mem}
        mrows = [
            (b, [_memory_cell(mby.get((n, b))) for n in mnames])
            for b in sorted({m["batch"] for m in mem})
        ]
        out += [
            "Working memory of one loss + gradient: peak resident set above the process's"
            " baseline, large blocks mapped one by one (`MALLOC_MMAP_THRESHOLD_`);"
            " `tracemalloc` for NumPy in brackets:",
            "",
            *_table(mnames, mrows),
            "",
        ]
    out += ["Targets:", "", "| target | measured | met |", "|---|---|---|"]
    for t in result["targets"]:
        v = "—" if t["value"] is None else f"{t['value']:.2f}"
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        out.append(f"| {t['target']} | {v} | {met} |")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- plot


def _series(records: list[dict[str, Any]], name: str, value: Any) -> list[tuple[int, float]]:
    """(B, value(record)) of one configuration, sorted by B, where the value is there."""
    pts = ((r["batch"], value(r)) for r in records if r["name"] == name)
    return sorted((b, v) for b, v in pts if v)


def plot(result: dict[str, Any], path: Path) -> None:
    """Time, time / floor and working memory against B, log-log; one legend below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_r, ax_m) = plt.subplots(1, 3, figsize=(19, 6.4), layout="constrained")
    floor = dict(_series(result["time"], "cdist", lambda t: t.get("median_s")))
    handles: dict[str, Any] = {}
    for name in DESCRIPTIONS:
        style = {"marker": "o", "label": f"{name}: {DESCRIPTIONS[name]}", **STYLES[name]}
        pts = _series(result["time"], name, lambda t: t.get("median_s"))
        if pts:
            b, s = zip(*pts, strict=True)
            (handles[name],) = ax_t.plot(b, s, **style)
            rel = [(bb, ss / floor[bb]) for bb, ss in pts if bb in floor]
            if rel and name not in ("cdist", "cdist-cuda"):
                ax_r.plot(*zip(*rel, strict=True), **style)
        mem = _series(
            result["memory"],
            name,
            lambda m: m.get("device_peak_bytes") or m.get("rss_delta_bytes"),
        )
        if mem:
            b, v = zip(*mem, strict=True)
            (line,) = ax_m.plot(b, [x / GiB for x in v], **style)
            handles.setdefault(name, line)
    sizes = sorted({t["batch"] for t in result["time"]})
    if sizes:
        b = np.array(sizes, dtype=float)
        handles["matrix"] = ax_m.plot(
            b, 4 * b * b / GiB, color="grey", linestyle=":", label="one B×B float32 matrix"
        )[0]
        handles["target"] = ax_r.axhline(
            3, color="grey", linestyle="-.", label="3× (target for torch and JAX, B ≥ 4096)"
        )
    panels = (
        (ax_t, "median time of loss + gradient [s]"),
        (ax_r, "time / torch.cdist(F, F) at the same B"),
        (ax_m, "working memory [GiB]"),
    )
    for ax, ylabel in panels:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(f"batch size B (d = {result['config']['dim']}, float32)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(handles=list(handles.values()), loc="outside lower center", ncols=3, fontsize=8)
    cpu = result["machine"].get("Model name", platform.processor())
    fig.suptitle(f"Dense log-ratio loss vs B — {cpu}, {result['machine'].get('cpu_count')} cores")
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- files


def write(result: dict[str, Any], folder: Path, stem: str, *, json_too: bool = True) -> str:
    """Write ``<stem>.json`` (unless not ``json_too``), ``<stem>.md`` and the plot; the table.

    The plot is ``benchmark.png`` for ``results``, ``benchmark-quick.png`` for
    ``results-quick`` (the stem with ``results`` replaced).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if json_too:
        (folder / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    md = markdown(result)
    (folder / f"{stem}.md").write_text(md)
    plot(result, folder / (stem.replace("results", "benchmark", 1) + ".png"))
    return md


def replot(results_json: Path, folder: Path | None = None) -> None:
    """Redraw the table and the plot of a results file, next to it or into ``folder``; the
    targets are evaluated again from its records (the current targets of this file)."""
    result = json.loads(results_json.read_text())
    result["targets"] = evaluate_targets(
        result["time"], result["memory"], result.get("memory_default_allocator", [])
    )
    write(result, folder or results_json.parent, results_json.stem, json_too=False)
