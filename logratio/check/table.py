"""The check's report: the table of rows, the JSON record, the failures and the summary line."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .comparison import FD_TOLERANCE, HALF_TOLERANCES, TOLERANCES, CheckRow

__all__ = ["as_dict", "as_json", "failure_lines", "format_table", "summary_line"]

_HEAD = ("backend", "device", "dtype", "loss err", "grad err", "autograd err", "fd err",
         "time", "status")  # fmt: skip


def format_table(rows: list[CheckRow]) -> str:
    """A plain-text table of the rows."""
    lines = [_HEAD]
    for r in rows:
        status = "ok" if r.ok else "FAIL"
        lines.append(
            (
                r.backend,
                r.device,
                r.dtype,
                _fmt(r.loss_error),
                _fmt(r.grad_error),
                _fmt(r.autograd_error),
                _fmt(r.fd_error),
                f"{1000 * r.seconds:.1f} ms",
                status,
            )
        )
    widths = [max(len(line[c]) for line in lines) for c in range(len(_HEAD))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]  # fmt: skip
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def as_dict(r: CheckRow) -> dict[str, Any]:
    """One row as JSON-ready values (NaN and infinity as ``None``), with ``ok``."""
    out = dataclasses.asdict(r)
    out["ok"] = r.ok
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()
    }


def as_json(rows: list[CheckRow], notes: list[str]) -> dict[str, Any]:
    """The record ``--json`` writes: ``{"rows": [...], "notes": [...]}``."""
    return {"rows": [as_dict(r) for r in rows], "notes": notes}


def failure_lines(rows: list[CheckRow]) -> list[str]:
    """``FAIL backend device dtype: reasons`` for each failed row."""
    out = []
    for r in rows:
        if not r.ok:
            reasons = [r.error] if r.error else r.failures
            out.append(f"FAIL {r.backend} {r.device} {r.dtype}: {'; '.join(reasons)}")
    return out


def summary_line(rows: list[CheckRow], seconds: float) -> str:
    """How many rows agree, under which tolerances, in how long."""
    good = sum(r.ok for r in rows)
    used = {r.dtype for r in rows}
    tols = {**TOLERANCES, **HALF_TOLERANCES}
    tol = ", ".join(f"{k}: loss {a:.0e}, grad {b:.0e}" for k, (a, b) in tols.items() if k in used)
    return (
        f"{good}/{len(rows)} rows agree with the float64 reference "
        f"(tolerances {tol}; finite differences {FD_TOLERANCE:.0e}) in {seconds:.1f} s"
    )


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1e}" if math.isfinite(value) else str(value)
