"""``logratio check``: validate the loss and its gradient on every installed backend.

For each backend and device found (NumPy, array-api-strict, PyTorch CPU/CUDA/MPS, JAX
CPU/GPU, CuPy) and each of float32 and float64, a few small random problems covering the
options (every row an anchor, the paper's single anchor, an anchor subset, ties included and
excluded, squared and plain Euclidean distances, a pair mask, given label distances) are
solved with :func:`logratio.log_ratio_loss_and_grad`, and compared with

* a float64 reference that enumerates every triplet with loops (``logratio._reference``),
  independent of the dense O(B²) identity;
* the framework's own automatic differentiation of :func:`logratio.log_ratio_loss`, where
  the framework has one (PyTorch, JAX);
* central finite differences of the backend's own float64 loss.

Errors are relative: ``|loss − ref| / |ref|`` for the value, ``max|g − g_ref| / max|g_ref|``
for gradients.  A backend fails when an error exceeds the tolerance of its dtype
(:data:`TOLERANCES`), when the gradient does not come back in the embeddings' dtype, or when
it raises.  With ``half`` dtypes (``--half``) float16 and bfloat16 inputs are checked too,
against the reference of the rounded inputs.  JAX runs under ``jax.jit`` (one compilation
per dtype, included in the time column) and its finite differences under ``jax.vmap``.
Frameworks are imported only here, on demand: ``import logratio`` never imports them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import logratio

from . import _reference as ref

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
BACKENDS = ("numpy", "array_api_strict", "torch", "jax", "cupy")


@dataclass(frozen=True)
class CheckProblem:
    """One small random problem and its float64 reference answer."""

    name: str
    embeddings: np.ndarray
    labels: np.ndarray | None
    label_distances: np.ndarray | None
    options: dict[str, Any]
    loss: float
    grad: np.ndarray


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


def make_problems(seed: int = 0) -> list[CheckProblem]:
    """A handful of problems (B = 8, d = 3) covering the loss's options, with reference answers."""
    rng = np.random.default_rng(seed)
    # one shape for every problem: eager JAX compiles each operation once per shape
    b, d = 8, 3
    specs: list[tuple[str, dict[str, Any]]] = [
        ("all anchors, vector labels", {}),
        ("anchor 0, Euclidean", {"anchors": 0, "squared": False}),
        ("anchor subset, ties excluded", {"anchors": [0, 2, 5], "ties": "exclude"}),
        ("ties included, cityblock, sum", {"label_metric": "cityblock", "reduction": "sum"}),
        ("label distances, mask", {"mask": True}),
    ]
    out = []
    for name, opts in specs:
        f = rng.normal(size=(b, d))
        labels = dl = None
        options = dict(opts)
        if "ties" in name:  # integer labels: many equal label distances
            labels = rng.integers(0, 4, size=(b, 2)).astype(np.float64)
        elif "label distances" in name:
            half = rng.integers(1, 4, size=(b, b)).astype(np.float64)
            dl = np.triu(half, 1) + np.triu(half, 1).T
        elif "anchor 0" in name:
            labels = rng.uniform(0, 5, size=b)
        else:
            labels = rng.normal(size=(b, 2))
        if options.pop("mask", False):
            options["mask"] = rng.random((b, b)) < 0.8
        out.append(with_reference(name, f, labels, dl, options))
    return out


def with_reference(
    name: str,
    embeddings: np.ndarray,
    labels: np.ndarray | None,
    label_distances: np.ndarray | None,
    options: dict[str, Any],
) -> CheckProblem:
    """A problem with its loss and gradient computed by the float64 loop reference."""
    metric = options.get("label_metric", "euclidean")
    dist = label_distances if labels is None else ref.label_distances(labels, metric)
    anchors = options.get("anchors")
    loss, grad = ref.loss_and_grad(
        embeddings,
        dist,
        anchors=[anchors] if isinstance(anchors, int) else anchors,
        mask=options.get("mask"),
        squared=options.get("squared", True),
        ties=options.get("ties", "include"),
        reduction=options.get("reduction", "mean"),
    )
    return CheckProblem(name, embeddings, labels, label_distances, options, loss, grad)


@dataclass
class Backend:
    """How to move NumPy data to one framework and device, and back."""

    name: str
    device: str
    dtypes: tuple[str, ...]
    asarray: Callable[[np.ndarray, str | None], Any]  # (array, dtype name or None for bool)
    to_numpy: Callable[[Any], np.ndarray]
    autograd: Callable[[Callable[[Any], Any], Any], Any] | None = None  # (loss_fn, x) -> grad
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    compile: Callable[[Callable], Callable] = field(default=lambda fun: fun)  # JAX: jax.jit
    map_loss: Callable[[Callable, Any], Any] = field(default=lambda fun, xs: _loop(fun, xs))


def _loop(fun: Callable[[Any], Any], xs: Any) -> list[Any]:
    """``[fun(x) for x in xs]`` over the first axis, without iterating the array itself."""
    return [fun(xs[i, ...]) for i in range(xs.shape[0])]


def discover(names: tuple[str, ...] = BACKENDS) -> tuple[list[Backend], list[str]]:
    """The installed backends and devices, and a note for each one that is not usable."""
    found: list[Backend] = []
    notes: list[str] = []
    for name in names:
        if importlib.util.find_spec(name) is None:
            notes.append(f"{name}: not installed")
            continue
        try:
            found.extend(_FACTORIES[name]())
        except Exception as err:  # a broken install: report it, do not stop the check
            notes.append(f"{name}: unusable ({type(err).__name__}: {err})")
    return found, notes


def _numpy_backends() -> list[Backend]:
    def asarray(x, dtype):
        return np.asarray(x, dtype=dtype) if dtype else np.asarray(x)

    return [Backend("numpy", "cpu", ("float32", "float64", "float16"), asarray, np.asarray)]


def _strict_backends() -> list[Backend]:
    xp = importlib.import_module("array_api_strict")

    def asarray(x, dtype):
        return xp.asarray(x, dtype=getattr(xp, dtype)) if dtype else xp.asarray(x)

    return [Backend("array_api_strict", "cpu", ("float32", "float64"), asarray, np.from_dlpack)]


def _torch_backends() -> list[Backend]:
    torch = importlib.import_module("torch")
    every = (*DTYPES, *HALF_DTYPES)
    devices = [("cpu", every)]
    if torch.cuda.is_available():
        devices += [(f"cuda:{i}", every) for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(("mps", ("float32", *HALF_DTYPES)))  # MPS has no float64

    def autograd(fun, x):
        x = x.detach().requires_grad_(True)
        out = fun(x)
        if not out.requires_grad:
            raise RuntimeError("log_ratio_loss returned a tensor without a gradient graph")
        return torch.autograd.grad(out, x)[0]

    def to_numpy(x):
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()  # NumPy has no bfloat16

    out = []
    for dev, dtypes in devices:

        def asarray(x, dtype, dev=dev):
            t = torch.as_tensor(np.asarray(x), device=dev)
            return t.to(getattr(torch, dtype)) if dtype else t

        out.append(Backend("torch", dev, dtypes, asarray, to_numpy, autograd))
    return out


def _jax_backends() -> list[Backend]:
    jax = importlib.import_module("jax")
    jnp = importlib.import_module("jax.numpy")
    devices = list(jax.devices("cpu"))
    for platform in ("gpu", "tpu"):
        with contextlib.suppress(RuntimeError):
            devices += list(jax.devices(platform))

    def x64() -> contextlib.AbstractContextManager:
        # float64 needs jax_enable_x64; set it only for the duration of the check
        if hasattr(jax, "enable_x64"):
            return jax.enable_x64(True)
        return importlib.import_module("jax.experimental").enable_x64()

    def autograd(fun, x):
        return jax.grad(fun)(x)

    out = []
    for device in devices:

        def asarray(x, dtype, device=device):
            a = jnp.asarray(x, dtype=getattr(jnp, dtype)) if dtype else jnp.asarray(x)
            return jax.device_put(a, device)

        label = f"{device.platform}:{device.id}"
        dtypes = (*DTYPES, *HALF_DTYPES)
        out.append(
            Backend(
                "jax", label, dtypes, asarray, np.asarray, autograd, x64,
                compile=jax.jit, map_loss=lambda fun, xs: jax.vmap(fun)(xs),
            )
        )  # fmt: skip
    return out


def _cupy_backends() -> list[Backend]:
    cp = importlib.import_module("cupy")
    out = []
    for i in range(cp.cuda.runtime.getDeviceCount()):

        def asarray(x, dtype, i=i):
            with cp.cuda.Device(i):
                return cp.asarray(x, dtype=dtype) if dtype else cp.asarray(x)

        dtypes = ("float32", "float64", "float16")
        out.append(Backend("cupy", f"cuda:{i}", dtypes, asarray, cp.asnumpy))
    return out


_FACTORIES: dict[str, Callable[[], list[Backend]]] = {
    "numpy": _numpy_backends,
    "array_api_strict": _strict_backends,
    "torch": _torch_backends,
    "jax": _jax_backends,
    "cupy": _cupy_backends,
}


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
                for x, kw in zip(xs, kwargs, strict=True):
                    loss, grad = logratio.log_ratio_loss_and_grad(x, **kw)
                    auto = None
                    if backend.autograd is not None:
                        auto = backend.autograd(
                            lambda z, kw=kw: logratio.log_ratio_loss(z, **kw), x
                        )
                    out.append((loss, grad, auto))
                return out

            results = backend.compile(solve)([x for x, _ in inputs])
            fd = _fd_gradients(backend, dtype, problems, kwargs) if dtype == "float64" else None
            errs: dict[str, list[float]] = {"loss": [], "grad": [], "autograd": [], "fd": []}
            for k, (prob, (loss, grad, auto)) in enumerate(zip(problems, results, strict=True)):
                if str(grad.dtype).rsplit(".", 1)[-1] != dtype:
                    row.failures.append(f"{prob.name}: gradient dtype {grad.dtype}")
                grad_np = backend.to_numpy(grad)
                errs["loss"].append(_rel(backend.to_numpy(loss), prob.loss))
                errs["grad"].append(_rel(grad_np, prob.grad))
                if auto is not None:
                    errs["autograd"].append(_rel(backend.to_numpy(auto), prob.grad))
                if fd is not None:
                    errs["fd"].append(_rel(grad_np, fd[k]))
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
            backend.map_loss(lambda z, kw=kw: logratio.log_ratio_loss(z, **kw), stack)
            for stack, kw in zip(stacks, kwargs, strict=True)
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
        prob.options,
    )  # fmt: skip


def _float64(x: Any) -> np.ndarray:
    return np.asarray(x).astype(np.float64)


def _inputs(backend: Backend, dtype: str, prob: CheckProblem) -> tuple[Any, dict[str, Any]]:
    kwargs = dict(prob.options)
    if prob.labels is not None:
        kwargs["labels"] = backend.asarray(prob.labels, dtype)
    else:
        kwargs["label_distances"] = backend.asarray(prob.label_distances, dtype)
    if "mask" in kwargs:
        kwargs["mask"] = backend.asarray(kwargs["mask"], None)
    if isinstance(kwargs.get("anchors"), list):
        kwargs["anchors"] = backend.asarray(np.asarray(kwargs["anchors"]), None)
    return backend.asarray(prob.embeddings, dtype), kwargs


def _rel(value: Any, reference: Any) -> float:
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
        dist = prob.label_distances
        if dist is None:
            dist = ref.label_distances(prob.labels, prob.options.get("label_metric", "euclidean"))
        anchors = prob.options.get("anchors")
        opts = {
            "anchors": [anchors] if isinstance(anchors, int) else anchors,
            "mask": prob.options.get("mask"),
            "squared": prob.options.get("squared", True),
            "ties": prob.options.get("ties", "include"),
            "reduction": prob.options.get("reduction", "mean"),
        }
        fd = ref.finite_differences(lambda f, d=dist, o=opts: ref.loss_and_grad(f, d, **o)[0],
                                    prob.embeddings)  # fmt: skip
        worst = max(worst, _rel(prob.grad, fd))
    return worst


def run_check(
    backends: tuple[str, ...] = BACKENDS, *, seed: int = 0, dtypes: tuple[str, ...] = DTYPES
) -> tuple[list[CheckRow], list[str]]:
    """Check every installed backend, device and dtype; return the rows and the notes.

    ``dtypes`` may add ``"float16"`` and ``"bfloat16"`` to the default float32 and float64;
    a backend is checked in those of them it has.
    """
    problems = make_problems(seed)
    found, notes = discover(backends)
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


def format_table(rows: list[CheckRow]) -> str:
    """A plain-text table of the rows."""
    head = ("backend", "device", "dtype", "loss err", "grad err", "autograd err", "fd err",
            "time", "status")  # fmt: skip
    lines = [head]
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
    widths = [max(len(line[c]) for line in lines) for c in range(len(head))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]  # fmt: skip
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def _as_dict(r: CheckRow) -> dict[str, Any]:
    out = dataclasses.asdict(r)
    out["ok"] = r.ok
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()
    }


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1e}" if math.isfinite(value) else str(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``logratio check``."""
    parser.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="check only this backend (repeatable; default: every installed one)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random problems")
    parser.add_argument(
        "--half",
        action="store_true",
        help="also check float16 and bfloat16 inputs, where the backend has them",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the rows to this JSON file")


def run(args: argparse.Namespace) -> int:
    """Run the check, print the table; 0 when every backend agrees, 1 otherwise."""
    backends = tuple(args.backend) if args.backend else BACKENDS
    start = time.perf_counter()
    dtypes = (*DTYPES, *HALF_DTYPES) if args.half else DTYPES
    rows, notes = run_check(backends, seed=args.seed, dtypes=dtypes)
    print(format_table(rows))
    for note in notes:
        print(f"note: {note}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"rows": [_as_dict(r) for r in rows], "notes": notes}, fh, indent=2)
    bad = [r for r in rows if not r.ok]
    for r in bad:
        reasons = [r.error] if r.error else r.failures
        print(f"FAIL {r.backend} {r.device} {r.dtype}: {'; '.join(reasons)}")
    used = {r.dtype for r in rows}
    tols = {**TOLERANCES, **HALF_TOLERANCES}
    tol = ", ".join(f"{k}: loss {a:.0e}, grad {b:.0e}" for k, (a, b) in tols.items() if k in used)
    print(
        f"{len(rows) - len(bad)}/{len(rows)} rows agree with the float64 reference "
        f"(tolerances {tol}; finite differences {FD_TOLERANCE:.0e}) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m logratio.check``."""
    parser = argparse.ArgumentParser(prog="logratio check", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
