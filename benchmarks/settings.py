"""What one benchmark run measures: the sizes, repeats, caps and output folder, fixed once.

:class:`Settings` is built from the command line (:func:`Settings.from_args`) and handed to
every function that needs it; a configuration's subprocess gets the same values back through
:meth:`Settings.child_argv`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL_SIZES = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 12288, 16384)
QUICK_SIZES = (64, 128, 256, 512, 1024, 2048)
#: ``--backends`` without the flag (``peers``: ten lines of plain PyTorch, with ``torch``;
#: ``near``: the numpy, torch and jax cases again on a batch
#: of near pairs, up to ``NEAR_MAX_BATCH``).
DEFAULT_BACKENDS = ("numpy", "torch", "jax", "cupy", "triplets", "near", "peers")
NEAR_MAX_BATCH = 8192
GiB = 1 << 30
TARGET_BATCH = 12288  # where the resident-memory target is set


@dataclass(frozen=True)
class Settings:
    """The values of one run, with the defaults of ``--quick`` and of the full suite applied."""

    sizes: tuple[int, ...]  # batch sizes B to time
    backends: tuple[str, ...]  # subset of numpy, torch, jax, cupy, triplets, near, peers
    repeats: int  # timed calls per configuration and B
    warmup: int  # untimed calls before them
    dim: int  # embedding dimension d
    seconds_per_config: float  # past this (and 3 calls), a B stops repeating
    wait_idle: float  # seconds to wait for idle CPUs before each configuration
    memory_sizes: tuple[int, ...]  # batch sizes of the memory measurements
    measure_memory: bool
    memory_cap_gib: float  # configurations that would need more are skipped above their cap
    out: Path  # folder of the results
    quick: bool

    @property
    def memory_cap_bytes(self) -> float:
        return self.memory_cap_gib * GiB

    @property
    def stem(self) -> str:
        """Name of the results files without suffix."""
        return "results-quick" if self.quick else "results"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        """The settings of the parsed command line (``None`` where a flag was not given)."""
        backends = args.backends
        if backends is None:
            backends = [*DEFAULT_BACKENDS]
        sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
        wait_idle = args.wait_idle
        if wait_idle is None:
            wait_idle = 0.0 if args.quick else 300.0
        return cls(
            sizes=tuple(sizes),
            backends=tuple(backends),
            repeats=args.repeats or (3 if args.quick else 7),
            warmup=args.warmup,
            dim=args.dim,
            seconds_per_config=args.seconds_per_config,
            wait_idle=wait_idle,
            memory_sizes=tuple(args.memory_sizes or [b for b in sizes if b >= 256]),
            measure_memory=not args.no_memory,
            memory_cap_gib=args.memory_cap_gib,
            out=args.out or HERE / "results",
            quick=args.quick,
        )

    def child_argv(self, sizes: list[int] | None = None) -> list[str]:
        """Flags that give a configuration's subprocess these settings (and ``sizes``)."""
        argv = ["--dim", str(self.dim), "--memory-cap-gib", str(self.memory_cap_gib)]
        argv += ["--backends", ",".join(self.backends), "--repeats", str(self.repeats)]
        argv += ["--warmup", str(self.warmup)]
        argv += ["--seconds-per-config", str(self.seconds_per_config)]
        if sizes is not None:
            argv += ["--sizes", ",".join(map(str, sizes))]
        return argv
