"""Training and evaluation loop of the demo: every method, every seed, the same batches.

For each seed: one rotated-digits split (:mod:`.data`), one initial network (:mod:`.models`),
one neighbour table (the 30 nearest training labels on the circle, :func:`logratio.knn_table`),
and one batch sequence (:class:`logratio.DenseBatchSampler` with that seed, batch 150,
k = 5; the binary-triplet baseline draws its batches around the same anchors with
:class:`~.methods.NaiveBatchSampler`).  Each method (:mod:`.methods`) trains a copy of the
network on its sequence for ``steps`` Adam steps and is evaluated on the held-out digits
every ``eval_every`` steps, leave-one-out (each held-out image a query against all the
others), with :mod:`logratio.metrics`.

The (seed, method) runs are independent, so they are spread over ``workers`` processes
(:mod:`.pool`), each with one thread: the network is too small for threads inside one step to
pay, while separate runs use separate cores fully.  A run's results do not depend on the
process it ran in.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import logratio
from logratio import metrics

from . import pool
from .data import CANVAS_SIDE, RotatedDigits, circle_distance, make_rotated_digits
from .methods import METHODS, Method, NaiveBatchSampler, l2_normalize, make_batch, methods_named
from .models import init_mlp, layer_sizes
from .pool import machine_cores

__all__ = [
    "DEFAULT_THREADS",
    "METRIC_KEYS",
    "DemoConfig",
    "RunHistory",
    "backend_trainer",
    "endless_batches",
    "eval_steps",
    "evaluate",
    "run_demo",
    "thread_limits",
]

#: The metrics reported, in table order; the mean label distances are in radians.
METRIC_KEYS = (
    "mean_label_distance@1",
    "mean_label_distance@5",
    "mean_label_distance@10",
    "ndcg@10",
    "ndcg@100",
    "spearman",
)


#: CPU threads per worker process by default.  The network is tiny (matrices of 150 × 576 and
#: smaller): a second thread barely shortens a step, and when other processes compete for the
#: cores, PyTorch's and OpenBLAS's spinning threads make every step tens of times slower.
DEFAULT_THREADS = 1


@dataclass(frozen=True)
class DemoConfig:
    """Everything that determines a demo run (with the seeds, its results)."""

    steps: int = 5000  # about one epoch of the sampler (5032 training samples)
    eval_every: int = 250
    seeds: tuple[int, ...] = (0, 1, 2)
    backend: str = "torch"
    batch_size: int = 150  # the paper's
    k: int = 5  # nearest label neighbours per batch, the paper's
    binary_neighbors: int = 30  # the pool of the binary-triplet positives, the authors'
    binary_positives: int = 5  # positives per binary-triplet batch, the authors'
    hidden: int = 256
    dim: int = 32
    lr: float = 1e-3
    copies: int = 4  # random rotations of each training digit
    held_out: float = 0.3  # fraction of the digit images kept for evaluation
    threads: int = DEFAULT_THREADS  # per worker process
    workers: int = field(default_factory=machine_cores)  # processes, one run each at a time
    methods: tuple[str, ...] = tuple(m.key for m in METHODS)  # keys of :data:`.methods.METHODS`

    def __post_init__(self) -> None:
        positive = (
            "steps", "eval_every", "batch_size", "hidden", "dim", "copies", "threads",
            "binary_positives",
        )  # fmt: skip
        for name in (*positive, "workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        if self.backend not in ("torch", "jax"):
            raise ValueError(f"backend must be 'torch' or 'jax'; got {self.backend!r}")
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must name distinct methods; got {self.methods!r}")
        methods_named(self.methods)  # unknown keys raise


@dataclass
class RunHistory:
    """One method trained with one seed: metrics at every evaluated step."""

    method: str
    seed: int
    steps: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in METRIC_KEYS})
    train_loss: list[float | None] = field(default_factory=list)  # mean since the last evaluation
    seconds: float = 0.0

    def final(self) -> dict[str, float]:
        return {k: v[-1] for k, v in self.metrics.items()}


def evaluate(
    embeddings: np.ndarray, label_distances: np.ndarray, normalize: bool
) -> dict[str, float]:
    """Leave-one-out retrieval metrics of held-out ``embeddings`` (n, d).

    ``label_distances`` (n, n) are the angle distances on the circle; L2-normalised methods
    are ranked on their normalised embeddings.
    """
    e = l2_normalize(embeddings) if normalize else embeddings
    return metrics.retrieval_metrics(
        e,
        e,
        ks=(1, 5, 10),
        ndcg_ks=(10, 100),
        label_distances=label_distances,
        exclude_self=True,
    )


def endless_batches(
    sampler: logratio.DenseBatchSampler | NaiveBatchSampler,
) -> Iterator[list[int]]:
    """The sampler's batches, epoch after epoch (each pass reshuffles reproducibly)."""
    while True:
        yield from sampler


def _backend(name: str) -> Any:
    if name == "torch":
        from . import backend_torch as mod
    else:
        from . import backend_jax as mod
    return mod


def eval_steps(config: DemoConfig) -> list[int]:
    """Steps at which the held-out set is evaluated: 0, every ``eval_every``, the last."""
    steps = list(range(0, config.steps, config.eval_every))
    return [*steps, config.steps]


def run_demo(config: DemoConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train and evaluate every method of ``config`` for every seed; return the results.

    The dict (also the demo's JSON output) holds ``config``, ``methods``, ``runs`` (one
    :class:`RunHistory` per method and seed, as dicts, seed-major), ``untrained`` (the
    step-0 metrics per seed) and timing.  A progress bar (tqdm) on stderr counts the steps.
    """
    from tqdm import tqdm

    methods = methods_named(config.methods)
    jobs = [(seed, method) for seed in config.seeds for method in methods]
    workers = max(1, min(config.workers, machine_cores(), len(jobs)))
    start = time.perf_counter()
    bar = tqdm(
        total=config.steps * len(jobs),
        desc="logratio demo",
        unit="step",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        mininterval=0.5,
    )
    with bar:
        runs = pool.run_jobs(
            functools.partial(_run_job, config),
            jobs,
            workers=workers,
            limits=functools.partial(thread_limits, config.backend, config.threads),
            bar=bar,
            describe=lambda job: f"{job[1].key} seed={job[0]}",
        )
    untrained = [
        {k: v[0] for k, v in run.metrics.items()} for run in runs if run.method == methods[0].key
    ]
    return {
        "config": asdict(config),
        "methods": [asdict(m) for m in methods],
        "metric_keys": list(METRIC_KEYS),
        "runs": [asdict(r) for r in runs],
        "untrained": untrained,
        "workers": workers,
        "seconds": time.perf_counter() - start,
        "versions": _versions(config.backend),
    }


@contextlib.contextmanager
def thread_limits(backend: str, threads: int) -> Iterator[None]:
    """``threads`` threads (framework, BLAS, OpenMP) in this process while the block runs;
    the old settings after."""
    from threadpoolctl import threadpool_limits

    mod = _backend(backend)
    previous = mod.get_threads()
    mod.set_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        mod.set_threads(previous)


@functools.lru_cache(maxsize=2)
def _seed_setup(
    seed: int, copies: int, held_out: float, binary_neighbors: int, sizes: tuple[int, ...]
) -> tuple[RotatedDigits, np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The data, held-out label distances, neighbour table and initial weights of a seed."""
    data = make_rotated_digits(seed, copies=copies, held_out=held_out)
    test_dist = np.asarray(circle_distance(data.test_y, data.test_y))
    neighbors = np.asarray(
        logratio.knn_table(data.train_y, binary_neighbors, label_metric=circle_distance)
    )
    params = init_mlp(np.random.default_rng([seed, 1]), list(sizes))
    return data, test_dist, neighbors, params


def _run_job(config: DemoConfig, seed: int, method: Method, advance: Any) -> RunHistory:
    """Train ``method`` with ``seed`` and evaluate it along the way; ``advance(n)`` reports
    ``n`` more steps done."""
    sizes = tuple(layer_sizes(CANVAS_SIDE**2, config.hidden, config.dim))
    data, test_dist, neighbors, params = _seed_setup(
        seed, config.copies, config.held_out, config.binary_neighbors, sizes
    )
    trainer = backend_trainer(_backend(config.backend), params, data, config)
    sampler = logratio.DenseBatchSampler(
        data.train_y,
        neighbors=neighbors,
        batch_size=config.batch_size,
        k=config.k,
        label_metric=circle_distance,
        seed=seed,
    )
    if method.loss == "binary_triplet":
        sampler = NaiveBatchSampler(
            sampler, neighbors, positives=config.binary_positives, pool=config.binary_neighbors
        )
    return _train_one(trainer, method, data, sampler, neighbors, test_dist, config, advance)


def backend_trainer(backend: Any, params: Any, data: RotatedDigits, config: DemoConfig) -> Any:
    """A fresh trainer of ``backend`` holding a copy of ``params``."""
    cls = backend.TorchTrainer if config.backend == "torch" else backend.JaxTrainer
    return cls(params, data.train_x, lr=config.lr)


def _train_one(
    trainer: Any,
    method: Method,
    data: RotatedDigits,
    sampler: logratio.DenseBatchSampler | NaiveBatchSampler,
    neighbors: np.ndarray,
    test_dist: np.ndarray,
    config: DemoConfig,
    advance: Any,
) -> RunHistory:
    run = RunHistory(method=method.key, seed=sampler.seed)
    t0 = time.perf_counter()
    losses: list[float] = []

    def checkpoint(step: int) -> None:
        scores = evaluate(trainer.embed(data.test_x), test_dist, method.normalize)
        run.steps.append(step)
        for key in METRIC_KEYS:
            run.metrics[key].append(scores[key])
        run.train_loss.append(float(np.mean(losses)) if losses else None)
        losses.clear()

    checkpoints = set(eval_steps(config))
    checkpoint(0)
    batches = itertools.islice(endless_batches(sampler), config.steps)
    done = 0  # steps not yet reported to ``advance``
    for step, indices in enumerate(batches, start=1):
        batch = make_batch(method, indices, data.train_y, neighbors)
        loss = trainer.step(method, batch)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"{method.key} (seed {sampler.seed}): the loss became {loss} at step {step}"
            )
        losses.append(loss)
        done += 1
        if step in checkpoints or done == 20:
            advance(done)
            done = 0
        if step in checkpoints:
            checkpoint(step)
    advance(done)
    run.seconds = time.perf_counter() - t0
    return run


def _versions(backend: str) -> dict[str, str]:
    import platform

    out = {"python": platform.python_version(), "logratio": logratio.__version__}
    out["numpy"] = np.__version__
    if backend == "torch":
        import torch

        out["torch"] = torch.__version__
    else:
        import jax

        out["jax"] = jax.__version__
    return out
