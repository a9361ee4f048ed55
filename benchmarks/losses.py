"""Rank-N-Contrast and y-aware InfoNCE against ``torch.cdist`` and their released forms.

One command times, in float32 with d = 128 and scalar labels, loss + backward of:

* ``cdist``: ``torch.cdist(F, F)``, the floor;
* ``rnc``, ``yaware``: :func:`logratio.rank_n_contrast_loss` and
  :func:`logratio.y_aware_infonce_loss` through the PyTorch adapter (its defaults);
* ``rnc-compiled``: Rank-N-Contrast with ``compile=True`` (its default is eager);
* ``yaware-eager``: y-aware InfoNCE with ``compile=False`` (its default compiles);
* ``rnc-released``: a restatement of the released ``RnCLoss`` (its (n, n, d) differences for
  the similarities, the Python loop over positives with an (n, n−1) mask per step, autograd
  through all of it), up to the B its memory allows;
* ``yaware-released``: a restatement of ``GeneralizedSupervisedNTXenLoss`` (every (2N, 2N)
  matrix materialised, the kernel weights in NumPy on the CPU), autograd.

Each configuration and B runs in its own subprocess, which reports the median of
``--repeats`` timed calls after a warm-up (the first call, compilation included, is reported
apart), and the working set of one more call: its peak resident memory (the kernel's
high-water mark, reset before it) above the resident memory just before it.  Results go to
``benchmarks/results/losses.json`` and a markdown table ``losses.md``.

    python benchmarks/losses.py                         # B = 256 … 4096
    python benchmarks/losses.py --sizes 512,1024 --repeats 3
    python benchmarks/losses.py --sizes 16384 --cases cdist,rnc,yaware --repeats 1 --out DIR
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = (
    "cdist", "rnc", "yaware", "rnc-released", "yaware-released", "rnc-compiled", "yaware-eager",
)  # fmt: skip
#: the released RnC keeps about 4·n³ bytes of masks (float32) for autograd: capped here
RELEASED_RNC_MAX = 1024


def _inputs(batch: int, dim: int):
    import numpy as np
    import torch

    rng = np.random.default_rng(batch)
    f = torch.tensor(rng.standard_normal((batch, dim)).astype(np.float32))
    y = torch.tensor(rng.uniform(0.0, 10.0, size=batch).astype(np.float32))
    return f, y


def released_rnc(z, y, tau=2.0):
    """The released RnCLoss's computation on (n, d) rows (views already concatenated)."""
    import torch

    n = z.shape[0]
    lab = (y[:, None] - y[None, :]).abs()
    logits = -(z[:, None, :] - z[None, :, :]).norm(2, dim=-1) / tau
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    exp_logits = logits.exp()
    off = ~torch.eye(n, dtype=torch.bool)
    logits = logits[off].view(n, n - 1)
    exp_logits = exp_logits[off].view(n, n - 1)
    lab = lab[off].view(n, n - 1)
    loss = 0.0
    for k in range(n - 1):
        neg = (lab >= lab[:, k : k + 1]).float()
        loss = loss - ((logits[:, k] - torch.log((neg * exp_logits).sum(-1))) / (n * (n - 1))).sum()
    return loss


def released_yaware(z, y, tau=0.1, sigma=1.0):
    """The released GeneralizedSupervisedNTXenLoss's computation, views concatenated."""
    import numpy as np
    import torch

    n = z.shape[0]
    z = torch.nn.functional.normalize(z, dim=-1)
    sim = z @ z.T / tau - 1e8 * torch.eye(n)
    labels = y.detach().cpu().numpy().reshape(n, 1).astype(np.float64)
    w = np.exp(-((labels - labels.T) ** 2) / (2 * sigma**2)) * (1 - np.eye(n))
    w /= w.sum(axis=1)
    log_p = torch.nn.functional.log_softmax(sim, dim=1)
    return -(torch.from_numpy(w).to(z.dtype) * log_p).sum() / (n / 2)


def child(case: str, batch: int, dim: int, repeats: int) -> dict:
    import torch

    import logratio

    f, y = _inputs(batch, dim)
    if case == "cdist":

        def run():
            return torch.cdist(f, f)

    else:
        fn = {
            "rnc": logratio.rank_n_contrast_loss,
            "yaware": logratio.y_aware_infonce_loss,
            "rnc-released": released_rnc,
            "rnc-compiled": functools.partial(logratio.rank_n_contrast_loss, compile=True),
            "yaware-eager": functools.partial(logratio.y_aware_infonce_loss, compile=False),
            "yaware-released": released_yaware,
        }[case]
        x = f.clone().requires_grad_(True)

        def run():
            x.grad = None
            fn(x, y).backward()

    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return {
        "median_s": sorted(times)[len(times) // 2],
        "first_s": first,
        "peak_kib": working_set_kib(run),
    }


def working_set_kib(run) -> int:
    """One call's peak resident memory above the level before it.  Freed memory is first
    returned to the system (``malloc_trim``: else the call reuses resident pages and looks
    free), then the kernel's high-water mark is reset (``/proc/self/clear_refs``)."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    base = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM := the current resident set
    run()
    return _status_kib("VmHWM") - base


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="256,512,1024,2048,4096")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--cases", default=",".join(CASES), help="a comma-separated subset")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        case, batch = args.child.rsplit(":", 1)
        print(json.dumps(child(case, int(batch), args.dim, args.repeats)))
        return 0
    rows = []
    for batch in (int(b) for b in args.sizes.split(",")):
        row = {"batch": batch}
        for case in args.cases.split(","):
            if case == "rnc-released" and batch > RELEASED_RNC_MAX:
                continue
            cmd = [sys.executable, __file__, "--child", f"{case}:{batch}",
                   "--dim", str(args.dim), "--repeats", str(args.repeats)]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                row[case] = {"error": done.stderr.strip().splitlines()[-1:]}
            else:
                row[case] = json.loads(done.stdout.strip().splitlines()[-1])
            print(batch, case, row[case], flush=True)
        rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "losses.json").write_text(json.dumps({"dim": args.dim, "rows": rows}, indent=1))
    (args.out / "losses.md").write_text(table(rows))
    print(table(rows))
    return 0


def table(rows: list[dict]) -> str:
    head = "| B | " + " | ".join(CASES) + " |\n|---|" + "---|" * len(CASES) + "\n"
    lines = []
    for row in rows:
        floor = row["cdist"]["median_s"]
        cells = []
        for case in CASES:
            r = row.get(case)
            if r is None or "median_s" not in r:
                cells.append("—")
                continue
            t, mib = r["median_s"], r["peak_kib"] / 1024
            cells.append(f"{t * 1e3:.1f} ms ({t / floor:.1f}×), {mib:.0f} MiB")
        lines.append(f"| {row['batch']} | " + " | ".join(cells) + " |")
    note = (
        "\nMedian loss + backward (ratio to `torch.cdist(F, F)`), and the working set of a "
        "call (its peak resident memory above the level before it, from the kernel's reset "
        "high-water mark); "
        "float32, d = 128, scalar labels.\n"
    )
    return head + "\n".join(lines) + "\n" + note


if __name__ == "__main__":
    sys.exit(main())
