"""Running one backend and dtype against the float64 references.

Each problem of :mod:`.problems` is solved with its loss's ``..._and_grad`` function and
compared with

* the float64 loop reference's loss and gradient;
* the framework's own automatic differentiation of the loss, where it
  has one (``Backend.grad``: PyTorch, JAX);
* central finite differences of the backend's own float64 loss.

Errors are relative: ``|loss − ref| / |ref|`` for the value, ``max|g − g_ref| / max|g_ref|``
for gradients.  A row fails when an error exceeds the tolerance of its dtype
(:data:`TOLERANCES`), when the gradient does not come back in the embeddings' dtype, or when
the backend raises.  Half dtypes are checked against the reference of the rounded inputs.
JAX runs under ``jax.jit`` (``Backend.compile``: one compilation per dtype, included in the
time) and its finite differences under ``jax.vmap`` (``Backend.map_over``).  The backends come
from the shared registry, :mod:`logratio.testing.backends`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import logratio

from .. import _reference as ref
from ..testing import backends as registry
from ..testing.backends import Backend
from .problems import LOSSES, CheckProblem, make_problems, reference_answer, with_reference

__all__ = [
    "BACKENDS",
    "DTYPES",
    "FD_STEP",
    "FD_TOLERANCE",
    "HALF_DTYPES",
    "HALF_TOLERANCES",
    "TOLERANCES",
    "CheckRow",
    "check_backend",
    "reference_self_check",
    "relative_error",
    "run_check",
]

#: Largest relative error accepted, per dtype: (loss value, gradient).  float32 carries
#: about 7 digits and the logs of distances lose a few more on small problems.
TOLERANCES = {"float32": (2e-4, 2e-3), "float64": (1e-9, 1e-8)}
#: Half precision (``--half``): the loss is computed in float32 from the rounded inputs and
#: the gradient comes back rounded to the half type (2⁻¹¹ for float16, 2⁻⁸ for bfloat16).
HALF_TOLERANCES = {"float16": (2e-4, 3e-3), "bfloat16": (2e-4, 2e-2)}
DTYPES = ("float32", "float64")
HALF_DTYPES = ("float16", "bfloat16")
#: Largest relative difference between the closed-form gradient and finite differences.
FD_TOLERANCE = 1e-5
#: Step of the central differences (float64 only).
FD_STEP = 1e-6
#: The backends the check knows: those of the registry.
BACKENDS = registry.NAMES


@dataclass
class CheckRow:
    """The result of one backend, device and dtype over every problem."""

    backend: str
    device: str
    dtype: str
    loss_error: float = math.nan
    grad_error: float = math.nan
    autograd_error: float | None = None  # None: the framework has no autodiff
    fd_error: float | None = None  # None: not computed (float32)
    seconds: float = 0.0
    error: str | None = None  # an exception message: the backend failed to run
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failures


def check_backend(backend: Backend, dtype: str, problems: list[CheckProblem]) -> CheckRow:
    """Compare one backend and dtype with the reference on every problem."""
    row = CheckRow(backend.name, backend.device, dtype)
    loss_tol, grad_tol = {**TOLERANCES, **HALF_TOLERANCES}[dtype]
    start = time.perf_counter()
    try:
        with backend.context():
            if dtype in HALF_DTYPES:  # compare with the reference of the rounded inputs
                problems = [_rounded(backend, dtype, prob) for prob in problems]
            inputs = [_inputs(backend, dtype, prob) for prob in problems]
            kwargs = [kw for _, kw in inputs]

            def solve(xs: list[Any]) -> list[tuple[Any, Any, Any]]:
                out = []
                for x, kw, prob in zip(xs, kwargs, problems, strict=True):
                    fn = getattr(logratio, LOSSES[prob.function])
                    loss, grad = getattr(logratio, LOSSES[prob.function] + "_and_grad")(x, **kw)
                    auto = None
                    if backend.grad is not None:
                        objective = _objective(fn, kw, prob.options.get("reduction"))
                        auto = backend.grad(objective, x)
                    out.append((loss, grad, auto))
                return out

            results = backend.compile(solve)([x for x, _ in inputs])
            fd = _fd_gradients(backend, dtype, problems, kwargs) if dtype == "float64" else None
            errs: dict[str, list[float]] = {"loss": [], "grad": [], "autograd": [], "fd": []}
            for k, (prob, (loss, grad, auto)) in enumerate(zip(problems, results, strict=True)):
                if str(grad.dtype).rsplit(".", 1)[-1] != dtype:
                    row.failures.append(f"{prob.name}: gradient dtype {grad.dtype}")
                grad_np = backend.to_numpy(grad)
                errs["loss"].append(relative_error(backend.to_numpy(loss), prob.loss))
                errs["grad"].append(relative_error(grad_np, prob.grad))
                if auto is not None:
                    errs["autograd"].append(relative_error(backend.to_numpy(auto), prob.grad))
                if fd is not None:
                    errs["fd"].append(relative_error(grad_np, fd[k]))
    except Exception as err:
        row.error = f"{type(err).__name__}: {err}"
        row.seconds = time.perf_counter() - start
        return row
    row.seconds = time.perf_counter() - start
    row.loss_error = max(errs["loss"])
    row.grad_error = max(errs["grad"])
    row.autograd_error = max(errs["autograd"]) if errs["autograd"] else None
    row.fd_error = max(errs["fd"]) if errs["fd"] else None
    for what, value, tol in (
        ("loss", row.loss_error, loss_tol),
        ("gradient", row.grad_error, grad_tol),
        ("autograd", row.autograd_error, grad_tol),
        ("finite differences", row.fd_error, FD_TOLERANCE),
    ):
        if value is not None and not value <= tol:
            row.failures.append(f"{what} error {value:.1e} > {tol:.0e}")
    return row


def _fd_gradients(
    backend: Backend, dtype: str, problems: list[CheckProblem], kwargs: list[dict[str, Any]]
) -> list[np.ndarray]:
    """Central differences of the backend's own loss, ``(L(F + h e) − L(F − h e)) / 2h``."""
    stacks = []
    for prob in problems:
        f = prob.embeddings
        eye = np.eye(f.size).reshape(f.size, *f.shape) * FD_STEP
        stacks.append(backend.asarray(np.concatenate([f + eye, f - eye]), dtype))

    def losses(stacks: list[Any]) -> list[Any]:
        return [
            backend.map_over(
                _objective(
                    getattr(logratio, LOSSES[prob.function]), kw, prob.options.get("reduction")
                ),
                stack,
            )
            for stack, kw, prob in zip(stacks, kwargs, problems, strict=True)
        ]

    out = []
    for prob, values in zip(problems, backend.compile(losses)(stacks), strict=True):
        values = np.asarray([backend.to_numpy(v) for v in values], dtype=np.float64)
        half = prob.embeddings.size
        out.append(((values[:half] - values[half:]) / (2 * FD_STEP)).reshape(prob.embeddings.shape))
    return out


def _rounded(backend: Backend, dtype: str, prob: CheckProblem) -> CheckProblem:
    """``prob`` with every input rounded to ``dtype``, and its reference answer recomputed."""

    def rnd(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else _float64(backend.to_numpy(backend.asarray(x, dtype)))

    return with_reference(
        prob.name, rnd(prob.embeddings), rnd(prob.labels), rnd(prob.label_distances),
        prob.options, prob.function,
    )  # fmt: skip


def _objective(fn: Any, kw: dict[str, Any], reduction: str | None) -> Any:
    """The scalar whose gradient the reference gives: the loss, or for ``"none"`` the sum of
    the per-anchor losses."""
    if reduction == "none":
        return lambda z: _sum(fn(z, **kw))
    return lambda z: fn(z, **kw)


def _sum(x: Any) -> Any:
    import array_api_compat

    return array_api_compat.array_namespace(x).sum(x)


def _float64(x: Any) -> np.ndarray:
    return np.asarray(x).astype(np.float64)


def _inputs(backend: Backend, dtype: str, prob: CheckProblem) -> tuple[Any, dict[str, Any]]:
    kwargs = dict(prob.options)
    if prob.labels is not None:
        kwargs["labels"] = backend.asarray(prob.labels, dtype)
    else:
        kwargs["label_distances"] = backend.asarray(prob.label_distances, dtype)
    if "mask" in kwargs:
        kwargs["mask"] = backend.asarray(kwargs["mask"])
    if isinstance(kwargs.get("anchors"), list):
        kwargs["anchors"] = backend.asarray(np.asarray(kwargs["anchors"]))
    return backend.asarray(prob.embeddings, dtype), kwargs


def relative_error(value: Any, reference: Any) -> float:
    """``max|value − reference| / max|reference|`` (the absolute error where that is 0)."""
    value = _float64(value)
    reference = _float64(reference)
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    diff = float(np.max(np.abs(value - reference))) if reference.size else 0.0
    if not math.isfinite(diff):
        return math.inf
    return diff / scale if scale > 0 else diff


def reference_self_check(problems: list[CheckProblem]) -> float:
    """Largest relative difference between the reference gradient and its finite differences."""
    worst = 0.0
    for prob in problems:

        def value(f: np.ndarray, prob: CheckProblem = prob) -> float:
            loss, _ = reference_answer(
                prob.function, f, prob.labels, prob.label_distances, prob.options
            )
            return float(np.sum(loss))

        fd = ref.finite_differences(value, prob.embeddings)
        worst = max(worst, relative_error(prob.grad, fd))
    return worst


def run_check(
    backends: tuple[str, ...] = BACKENDS, *, seed: int = 0, dtypes: tuple[str, ...] = DTYPES
) -> tuple[list[CheckRow], list[str]]:
    """Check every installed backend, device and dtype; return the rows and the notes.

    ``dtypes`` may add ``"float16"`` and ``"bfloat16"`` to the default float32 and float64;
    a backend is checked in those of them it has.  A backend that is not installed or not
    usable gives a note, not a row (``logratio check --backend NAME`` makes that an error).
    """
    problems = make_problems(seed)
    found, notes = registry.discover(backends)
    rows = []
    ref_row = CheckRow("reference (loops)", "cpu", "float64", loss_error=0.0, grad_error=0.0)
    ref_row.fd_error = reference_self_check(problems)
    if not ref_row.fd_error <= FD_TOLERANCE:
        ref_row.failures.append(f"finite differences error {ref_row.fd_error:.1e}")
    rows.append(ref_row)
    for backend in found:
        for dtype in dtypes:
            if dtype not in backend.dtypes:
                if dtype in DTYPES:
                    notes.append(f"{backend.name} {backend.device}: no {dtype} on this device")
                continue
            rows.append(check_backend(backend, dtype, problems))
    return rows, notes
