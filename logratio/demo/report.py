"""The demo's outputs: a summary (mean ± std over seeds), JSON, a Markdown table and a plot.

Mean label distances are angles: radians in the JSON, degrees in the table and the plot.
The standard deviation is the sample standard deviation over seeds (``ddof=1``; 0 for a
single seed).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "display_value",
    "make_output_folder",
    "markdown_table",
    "plot_history",
    "summarize",
    "write_outputs",
]

#: Column titles of the table and the plot, and whether higher is better.
METRIC_INFO: dict[str, tuple[str, bool]] = {
    "mean_label_distance@1": ("mean angle error @1 (°)", False),
    "mean_label_distance@5": ("mean angle error @5 (°)", False),
    "mean_label_distance@10": ("mean angle error @10 (°)", False),
    "ndcg@10": ("nDCG@10", True),
    "ndcg@100": ("nDCG@100", True),
    "spearman": ("Spearman ρ", True),
}


def display_value(key: str, value: float) -> float:
    """Degrees for the mean label distances (radians in the results), as is otherwise."""
    return math.degrees(value) if key.startswith("mean_label_distance") else value


def _mean_std(values: list[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "per_seed": [float(x) for x in arr]}


def summarize(results: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{method key: {metric: {"mean", "std", "per_seed"}}}`` of the final step."""
    keys = results["metric_keys"]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for method in results["methods"]:
        runs = [r for r in results["runs"] if r["method"] == method["key"]]
        out[method["key"]] = {k: _mean_std([r["metrics"][k][-1] for r in runs]) for k in keys}
    out["untrained"] = {
        k: _mean_std([u[k] for u in results["untrained"]]) for k in keys if results["untrained"]
    }
    return out


def markdown_table(results: dict[str, Any], summary: dict[str, Any]) -> str:
    """The final held-out metrics, mean ± std over seeds; the best mean of a column in bold."""
    keys = results["metric_keys"]
    titles = {m["key"]: m["title"] for m in results["methods"]}
    rows = [*titles, "untrained"]
    titles["untrained"] = "untrained network (step 0)"
    best = {}
    for key in keys:
        higher = METRIC_INFO[key][1]
        means = [summary[m][key]["mean"] for m in titles if m != "untrained"]
        best[key] = max(means) if higher else min(means)
    header = "| method | " + " | ".join(
        METRIC_INFO[k][0] + (" ↑" if METRIC_INFO[k][1] else " ↓") for k in keys
    )
    header += " | time / run (s)"
    lines = [header + " |", "|---" * (len(keys) + 2) + "|"]
    for m in rows:
        if m not in summary or not summary[m]:
            continue
        cells = []
        for key in keys:
            s = summary[m][key]
            digits = 1 if key.startswith("mean_label_distance") else 3
            text = (
                f"{display_value(key, s['mean']):.{digits}f} ± "
                f"{display_value(key, s['std']):.{digits}f}"
            )
            if m != "untrained" and s["mean"] == best[key]:
                text = f"**{text}**"
            cells.append(text)
        seconds = [r["seconds"] for r in results["runs"] if r["method"] == m]
        cells.append(f"{np.mean(seconds):.1f}" if seconds else "")
        lines.append(f"| {titles[m]} | " + " | ".join(cells) + " |")
    config = results["config"]
    seeds = len(config["seeds"])
    lines.append("")
    lines.append(
        f"Held-out rotated digits, leave-one-out retrieval; {config['steps']} steps of batch "
        f"{config['batch_size']}, mean ± std over {seeds} seed{'s' if seeds > 1 else ''} "
        f"({config['backend']} backend, {results['seconds']:.0f} s in all; a run's time "
        "includes its evaluations). Random retrieval gives a mean angle error of 90°."
    )
    return "\n".join(lines) + "\n"


def plot_history(results: dict[str, Any], path: Path) -> None:
    """One panel per metric: the held-out metric against the training step, per method.

    Lines are means over seeds, bands ± one standard deviation.  Uses Matplotlib's Agg
    canvas directly, so no display and no global backend switch are needed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = results["metric_keys"]
    fig = Figure(figsize=(13, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3).ravel()
    for method in results["methods"]:
        runs = [r for r in results["runs"] if r["method"] == method["key"]]
        steps = np.asarray(runs[0]["steps"])
        for ax, key in zip(axes, keys, strict=False):
            values = np.asarray([[display_value(key, v) for v in r["metrics"][key]] for r in runs])
            mean = values.mean(axis=0)
            std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros_like(mean)
            (line,) = ax.plot(steps, mean, label=method["title"])
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    for ax, key in zip(axes, keys, strict=False):
        title, higher = METRIC_INFO[key]
        ax.set_title(f"{title} ({'higher' if higher else 'lower'} is better)")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    config = results["config"]
    fig.suptitle(
        f"Rotated digits, held-out retrieval: mean ± std over {len(config['seeds'])} seeds "
        f"({config['backend']})"
    )
    fig.savefig(path, dpi=110)


def make_output_folder(out_dir: str | Path) -> str | None:
    """Create ``out_dir`` (and its parents) and check that files can be written in it, so
    that a bad ``--out`` fails before training; why it cannot be used, or ``None``."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        why = f"{type(err).__name__}: {err.strerror or err}"
        return f"cannot create or write in this folder ({why})"
    return None


def write_outputs(results: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``metrics.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    table = markdown_table(results, summary)
    paths = {
        "json": out / "results.json",
        "markdown": out / "results.md",
        "plot": out / "metrics.png",
    }
    payload = dict(results, summary=summary)
    paths["json"].write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n")
    paths["markdown"].write_text(table)
    plot_history(results, paths["plot"])
    return paths
