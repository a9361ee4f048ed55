"""The first call: import, then the first loss + backward, in a fresh process.

Each configuration runs in its own new Python process with an empty inductor cache (a new
``TORCHINDUCTOR_CACHE_DIR``), which reports the time from before ``import torch`` to the end
of the first ``backward``, and then of a second call (a new option set where the
configuration has one).  Configurations, at B = 150 (the paper's batch), float32, d = 128:

* ``peer-eager``: ten lines of plain PyTorch with autograd (``cases.peer_loss``);
* ``peer-compiled``: the same under ``torch.compile``;
* ``logratio``: ``logratio.log_ratio_loss`` with its defaults, then a call with ``eps=1e-5``;
* ``logratio-compiled``: the same with ``compile=True``.

Medians over ``--repeats`` processes, and the ratio to ``peer-eager``.

    python benchmarks/first_call.py                    # 3 processes per configuration
    python benchmarks/first_call.py --repeats 5 --batch 150
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = ("peer-eager", "peer-compiled", "logratio", "logratio-compiled")


def child(config: str, batch: int, dim: int) -> dict[str, float]:
    start = time.perf_counter()
    import numpy as np
    import torch

    torch.set_num_threads(int(os.environ.get("FIRST_CALL_THREADS", "2")))
    rng = np.random.default_rng(0)
    f = torch.tensor(rng.normal(size=(batch, dim)), dtype=torch.float32, requires_grad=True)
    y = torch.tensor(rng.uniform(size=batch), dtype=torch.float32)
    if config.startswith("peer"):
        sys.path.insert(0, str(HERE))
        from cases import peer_loss

        fn = torch.compile(peer_loss) if config == "peer-compiled" else peer_loss
        first, second = (lambda: fn(f, y)), (lambda: fn(f, y, eps=1e-5))
    else:
        import logratio

        compile = True if config == "logratio-compiled" else None
        first = lambda: logratio.log_ratio_loss(f, y, compile=compile)  # noqa: E731
        second = lambda: logratio.log_ratio_loss(f, y, eps=1e-5, compile=compile)  # noqa: E731
    first().backward()
    first_s = time.perf_counter() - start
    f.grad = None
    t = time.perf_counter()
    second().backward()
    return {"first_s": first_s, "new_options_s": time.perf_counter() - t}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=150)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.batch, args.dim)))
        return 0
    results: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.repeats):  # interleaved rounds
        for config in args.configs.split(","):
            with tempfile.TemporaryDirectory() as cache:
                env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
                cmd = [sys.executable, __file__, "--child", config,
                       "--batch", str(args.batch), "--dim", str(args.dim)]  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            if out.returncode != 0:
                raise RuntimeError(f"{config}: {out.stderr.strip().splitlines()[-1:]}")
            results.setdefault(config, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    peer = results.get("peer-eager")
    base = _median([r["first_s"] for r in peer]) if peer else None
    head = "first call | ratio to peer-eager | new option set"
    print(f"| configuration (B = {args.batch}) | {head} |")
    print("|---|---|---|---|")
    for config, runs in results.items():
        first = _median([r["first_s"] for r in runs])
        again = _median([r["new_options_s"] for r in runs])
        ratio = f"{first / base:.2f}×" if base else "—"
        print(f"| {config} | {first:.2f} s | {ratio} | {again * 1e3:.1f} ms |")
    return 0


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


if __name__ == "__main__":
    sys.exit(main())
