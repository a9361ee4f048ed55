"""What each benchmark configuration computes.

A :class:`Case` is one configuration: ``setup(batch, dim)`` builds its inputs and returns a
zero-argument callable that runs one loss + gradient (or the floor, ``torch.cdist``) and
waits for the result.  Frameworks are imported inside the setups, so that each subprocess of
the harness loads only the one it times.  Conversions from NumPy, waiting for a device and
autodiff go through :mod:`logratio.testing.backends`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from settings import FULL_SIZES, NEAR_MAX_BATCH, Settings

from logratio.testing import backends

#: What each configuration computes, for the tables and the plot (and their order).
DESCRIPTIONS = {
    "cdist": "torch.cdist(F, F): the floor",
    "numpy": "NumPy, core (closed-form gradient)",
    "torch": "PyTorch adapter (default: eager, in place): loss.backward(), closed-form rule",
    "torch-compiled": "PyTorch adapter with the compiled engine (compile=True)",
    "torch-autograd": "PyTorch autograd through the core's operations",
    "peer-eager": "ten lines of plain PyTorch (the per-row identity), autograd, eager",
    "peer-compiled": "the same ten lines under torch.compile",
    "jax": "JAX, jit(value_and_grad) with the custom_jvp rule",
    "cupy": "CuPy, core on the GPU",
    "cdist-cuda": "torch.cdist(F, F) on CUDA: the GPU floor",
    "torch-cuda": "PyTorch adapter on CUDA (default: eager)",
    "torch-cuda-compiled": "PyTorch adapter on CUDA, compiled engine (compile=True)",
    "jax-gpu": "JAX jit on the GPU",
    "numpy-near": "NumPy, a batch of near pairs (groups of 4 at D = 1e-6·(‖a‖² + ‖b‖²))",
    "torch-near": "PyTorch adapter (engine), the same batch of near pairs",
    "jax-near": "JAX jit, the same batch of near pairs",
    "triplets-dense": "materialised B×B×B residual differences, PyTorch autograd",
    "triplets-miner": "dense_triplets + triplet_log_ratio_loss, PyTorch autograd",
}

Setup = Callable[[int, int], Callable[[], Any]]


@dataclass(frozen=True)
class Case:
    """One thing to time: ``setup(batch, dim)`` returns a callable that runs it once."""

    name: str
    setup: Setup
    max_batch: int | None = None  # skipped above this B (memory or time cap)


# --------------------------------------------------------------------------- inputs


def make_inputs(batch: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian float32 embeddings (B, d) and uniform scalar labels (B,)."""
    rng = np.random.default_rng(seed + batch)
    emb = rng.standard_normal((batch, dim)).astype(np.float32)
    labels = rng.uniform(0.0, 10.0, size=batch).astype(np.float32)
    return emb, labels


def make_near_inputs(batch: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`make_inputs` with the rows in groups of 4 that share a label and lie within
    ``D = 1e-6·(‖a‖² + ‖b‖²)`` of each other, far below float32's Gram noise: where the loss
    drives pairs with equal labels.  Every row has 3 near pairs to recompute exactly."""
    emb, labels = make_inputs(batch, dim, seed)
    rng = np.random.default_rng(seed + batch + 1)
    base = np.repeat(emb[::4], 4, axis=0)[:batch].astype(np.float64)
    step = rng.standard_normal((batch, dim))
    step *= (np.sqrt(0.5e-6 * np.sum(base**2, axis=1)) / np.linalg.norm(step, axis=1))[:, None]
    labels = np.repeat(labels[::4], 4)[:batch]
    return (base + step).astype(np.float32), labels


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


def core_loss_and_grad(embeddings: Any, labels: Any, want_grad: bool = True) -> tuple[Any, Any]:
    """The core called directly, past every adapter: checked inputs, then the closed form.

    On tensors that require grad, autograd records the core's own operations; under
    ``torch.compile`` the whole evaluation is one graph for inductor to fuse.
    """
    from logratio import LossOptions, _dense, _problem

    p = _problem.prepare(_problem.Arrays(embeddings, labels), LossOptions().spec())
    return _dense.loss_and_grad(p, want_grad=want_grad)


def _waiter(backend: backends.Backend) -> Callable[[Any], Any]:
    """Wait for a result on the backend's device; on the CPU it is there when a call returns."""
    return (lambda x: x) if backend.device == "cpu" else backend.synchronize


# --------------------------------------------------------------------------- setups


def cdist_setup(device: str) -> Setup:
    def setup(batch: int, dim: int) -> Callable[[], Any]:
        import torch

        b = backends.get("torch", device)
        f = b.asarray(make_inputs(batch, dim)[0])
        wait = _waiter(b)
        return lambda: wait(torch.cdist(f, f))

    return setup


def numpy_setup(batch: int, dim: int, inputs: Callable = make_inputs) -> Callable[[], Any]:
    import logratio

    emb, y = inputs(batch, dim)
    return lambda: logratio.log_ratio_loss_and_grad(emb, y)


def numpy_near_setup(batch: int, dim: int) -> Callable[[], Any]:
    return numpy_setup(batch, dim, make_near_inputs)


def _torch_autograd(
    device: str, batch: int, dim: int, loss: Callable, inputs: Callable = make_inputs
) -> Callable[[], Any]:
    """Autograd of ``loss(embeddings, labels)`` on ``device``: one loss + ``backward`` a call."""
    b = backends.get("torch", device)
    emb, y = inputs(batch, dim)
    f, yt = b.asarray(emb), b.asarray(y)
    wait = _waiter(b)
    return lambda: wait(b.grad(lambda x: loss(x, yt), f))


def torch_setup(device: str, compile: bool | None = None, inputs: Callable = make_inputs) -> Setup:
    """The PyTorch adapter: the closed-form gradient is the autograd rule of the loss; the
    block kernel compiled by the engine (the default) or eager (``compile=False``)."""

    def setup(batch: int, dim: int) -> Callable[[], Any]:
        import logratio

        def loss(f: Any, y: Any) -> Any:
            return logratio.log_ratio_loss(f, y, compile=compile)

        return _torch_autograd(device, batch, dim, loss, inputs)

    return setup


def peer_loss(f: Any, y: Any, eps: float = 1e-6) -> Any:
    """What a user writes: the per-row variance identity (docs/design.md §1.1) in plain
    PyTorch with autograd, every row an anchor, ties included, the mean over triplets."""
    import torch

    b = f.shape[0]
    sq = (f * f).sum(1)
    dist = (sq[:, None] + sq[None, :] - 2 * f @ f.T).clamp_min(0)
    lab = (y.reshape(b, -1)[:, None, :] - y.reshape(b, -1)[None, :, :]).abs().sum(-1)
    off = ~torch.eye(b, dtype=torch.bool, device=f.device)
    u = (torch.log(dist + eps) - torch.log(lab + eps))[off].view(b, b - 1)
    n = b - 1
    rows = n * ((u - u.mean(1, keepdim=True)) ** 2).sum(1)
    return rows.sum() / (b * n * (n - 1) / 2)


def peer_setup(compiled: bool) -> Setup:
    """:func:`peer_loss`, eager or under ``torch.compile`` (compiled once, in the warm-up)."""

    def setup(batch: int, dim: int) -> Callable[[], Any]:
        import torch

        fn = torch.compile(peer_loss, dynamic=False) if compiled else peer_loss
        return _torch_autograd("cpu", batch, dim, fn)

    return setup


def torch_autograd_setup(batch: int, dim: int) -> Callable[[], Any]:
    """Autograd through the core's own operations (no closed-form rule), on the CPU."""
    return _torch_autograd(
        "cpu", batch, dim, lambda f, y: core_loss_and_grad(f, y, want_grad=False)[0]
    )


def jax_setup(device: str, inputs: Callable = make_inputs) -> Setup:
    def setup(batch: int, dim: int) -> Callable[[], Any]:
        import jax

        import logratio

        b = backends.get("jax", device)
        emb, y = inputs(batch, dim)
        f, yj = b.asarray(emb), b.asarray(y)
        step = b.compile(jax.value_and_grad(lambda x, lab: logratio.log_ratio_loss(x, lab)))
        return lambda: b.synchronize(step(f, yj))

    return setup


def cupy_setup(batch: int, dim: int) -> Callable[[], Any]:
    import logratio

    b = backends.get("cupy")
    emb, y = make_inputs(batch, dim)
    f, yc = b.asarray(emb), b.asarray(y)
    return lambda: b.synchronize(logratio.log_ratio_loss_and_grad(f, yc))


def _materialised_loss(batch: int) -> Callable[[Any, Any], Any]:
    """The loss as a straightforward implementation writes it: every (a, i, j) materialised."""
    import torch

    eps = 1e-6
    idx = torch.arange(batch)
    # counted triplets: i ≠ a, j ≠ a, i < j (each unordered neighbour pair once)
    pair = (idx[None, :, None] < idx[None, None, :]) & (idx[:, None, None] != idx[None, :, None])
    pair = pair & (idx[:, None, None] != idx[None, None, :])
    count = pair.sum()

    def loss(f: Any, y: Any) -> Any:
        sq = (f * f).sum(1)
        d = (sq[:, None] + sq[None, :] - 2 * f @ f.T).clamp_min(0)
        lab = (y[:, None] - y[None, :]).abs()
        u = torch.log(d + eps) - torch.log(lab + eps)
        r = u[:, :, None] - u[:, None, :]  # (B, B, B)
        return torch.where(pair, r * r, 0.0).sum() / count

    return loss


def triplets_dense_setup(batch: int, dim: int) -> Callable[[], Any]:
    return _torch_autograd("cpu", batch, dim, _materialised_loss(batch))


def triplets_miner_setup(batch: int, dim: int) -> Callable[[], Any]:
    """The loss on the explicit list of every triplet (``dense_triplets``), autograd through it."""
    import logratio

    b = backends.get("torch", "cpu")
    _, y = make_inputs(batch, dim)
    dl = np.abs(y[:, None] - y[None, :])
    trip = tuple(b.asarray(t) for t in logratio.dense_triplets(dl))
    dlt = b.asarray(dl)
    return _torch_autograd(
        "cpu", batch, dim, lambda f, _y: logratio.triplet_log_ratio_loss(f, dlt, trip)
    )


# --------------------------------------------------------------------------- what runs here


def available_cases(settings: Settings) -> list[Case]:
    """The configurations of ``settings`` that this machine can run, the floor first."""
    cases = [Case("cdist", cdist_setup("cpu"))]
    wanted = set(settings.backends)
    cap_bytes = settings.memory_cap_bytes
    near = "near" in wanted  # batches of near pairs: the cost of their exact distances
    if "numpy" in wanted:
        cases.append(Case("numpy", numpy_setup))
        if near:
            cases.append(Case("numpy-near", numpy_near_setup, max_batch=NEAR_MAX_BATCH))
    if "torch" in wanted:
        cases.append(Case("torch", torch_setup("cpu")))
        if near:
            near_torch = torch_setup("cpu", inputs=make_near_inputs)
            cases.append(Case("torch-near", near_torch, max_batch=NEAR_MAX_BATCH))
        cases.append(Case("torch-compiled", torch_setup("cpu", compile=True)))
        if "peers" in wanted:
            cases.append(Case("peer-eager", peer_setup(compiled=False)))
            cases.append(Case("peer-compiled", peer_setup(compiled=True)))
        cap = max(b for b in FULL_SIZES if autograd_bytes(b) <= cap_bytes)
        cases.append(Case("torch-autograd", torch_autograd_setup, max_batch=cap))
    if "jax" in wanted and _has_device("jax", "cpu"):
        cases.append(Case("jax", jax_setup("cpu")))
        if near:
            near_jax = jax_setup("cpu", make_near_inputs)
            cases.append(Case("jax-near", near_jax, max_batch=NEAR_MAX_BATCH))
    if "triplets" in wanted:
        cap = max(b for b in FULL_SIZES if materialised_bytes(b) <= cap_bytes)
        cases.append(Case("triplets-dense", triplets_dense_setup, max_batch=cap))
        fits = (b for b in FULL_SIZES if miner_bytes(b, settings.dim) <= cap_bytes)
        cases.append(Case("triplets-miner", triplets_miner_setup, max_batch=max(fits, default=0)))
    if _has_device("torch", "cuda:0"):
        cases.append(Case("cdist-cuda", cdist_setup("cuda:0")))
        if "torch" in wanted:
            cases.append(Case("torch-cuda", torch_setup("cuda:0")))
            cases.append(Case("torch-cuda-compiled", torch_setup("cuda:0", compile=True)))
    if "jax" in wanted and _has_device("jax", "gpu:0"):
        cases.append(Case("jax-gpu", jax_setup("gpu:0")))
    if "cupy" in wanted and _has_device("cupy"):
        cases.append(Case("cupy", cupy_setup))
    return cases


def _has_device(name: str, device: str | None = None) -> bool:
    """Whether the registry can build backend ``name`` on ``device`` here."""
    try:
        backends.get(name, device)
    except Exception:  # not installed, no such device, or a broken install
        return False
    return True


def blocked_equals_unblocked(batch: int, dim: int) -> dict[str, Any]:
    """Max relative difference between the default blocks and one block, loss and gradient."""
    import logratio

    emb, y = make_inputs(batch, dim)
    out: dict[str, Any] = {"batch": batch}
    for name in ("numpy", "torch"):
        b = backends.get(name, "cpu")
        arr, lab = b.asarray(emb), b.asarray(y)
        l0, g0 = logratio.log_ratio_loss_and_grad(arr, lab, block_size=batch)
        l1, g1 = logratio.log_ratio_loss_and_grad(arr, lab, block_size=max(1, batch // 7))
        l0, g0, l1, g1 = (b.to_numpy(x).astype(np.float64) for x in (l0, g0, l1, g1))
        out[name] = {
            "loss_rel_diff": float(abs(l1 - l0) / abs(l0)),
            "grad_rel_diff": float(np.max(np.abs(g1 - g0)) / np.max(np.abs(g0))),
        }
    return out
