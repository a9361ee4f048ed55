"""``assert_matches_reference``: property-check an implementation of the loss against the
float64 reference (requires ``hypothesis``).

The problems come from :mod:`logratio.testing.strategies` (grids with duplicate rows, tied
labels, scales from far below ``eps`` to far above it); the expected values from the loops
of :mod:`logratio.testing.reference`.  On a mismatch Hypothesis shrinks the problem, and the
AssertionError shows the option set, the smallest failing example as arrays, the expected
and the computed value and the tolerance.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException

from . import backends as registry
from .cases import Expected, LossCase, expected
from .strategies import (
    anchor_specs,
    batch_sizes,
    dims,
    embedding_arrays,
    label_arrays,
    masks,
)

__all__ = [
    "OPTION_NAMES",
    "OPTION_VALUES",
    "TOLERANCES",
    "accepted_options",
    "assert_matches_reference",
    "option_sets",
]

#: The keyword options of :func:`logratio.log_ratio_loss` that a checked function may take.
OPTION_NAMES = (
    "anchors",
    "mask",
    "squared",
    "label_metric",
    "eps",
    "root_eps",
    "ties",
    "reduction",
)

#: The values each option is drawn from with ``options=None`` (``"draw"``: arrays drawn per
#: example by :func:`~logratio.testing.strategies.anchor_specs` / ``masks``; ``root_eps`` is
#: used only with ``squared=False``; ``eps`` keeps its default and is not passed).
OPTION_VALUES: dict[str, tuple[Any, ...]] = {
    "squared": (True, False),
    "ties": ("include", "exclude"),
    "reduction": ("mean", "sum", "none"),
    "label_metric": ("euclidean", "sqeuclidean", "cityblock"),
    "anchors": (None, 0, "draw"),
    "mask": (None, "draw"),
    "root_eps": (0.0, 1e-4),
}

#: Per dtype, ``(δ, ρ)``: the loss may be off by ``δ`` relative per log-distance, i.e. by
#: :meth:`~logratio.testing.strategies.Expected.loss_tolerance` (``2δ(1 + L)`` for the
#: mean ``L``, ``2δ(T + S)`` for a sum ``S`` of ``T`` terms); each gradient component by
#: ``ρ · max|∂L/∂F|`` (the reference gradient's largest component).
TOLERANCES: dict[str, tuple[float, float]] = {"float64": (1e-7, 1e-6), "float32": (5e-4, 5e-3)}


def accepted_options(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The names of :data:`OPTION_NAMES` that ``fn`` takes as keywords (all of them when it
    takes ``**kwargs`` or has no signature to read)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return OPTION_NAMES
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return OPTION_NAMES
    names = {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return tuple(n for n in OPTION_NAMES if n in names)


def option_sets(names: tuple[str, ...] = OPTION_NAMES, **fixed: Any) -> Iterator[dict[str, Any]]:
    """Every combination of ``squared``, ``ties`` and ``reduction`` among ``names`` (values of
    :data:`OPTION_VALUES`, or those of ``fixed``), with ``anchors``, ``mask`` and
    ``label_metric`` drawn per example where ``names`` has them: the option sets of
    ``logratio check --against``."""
    grid = [k for k in ("squared", "ties", "reduction") if k in names and k not in fixed]
    drawn: dict[str, Any] = {}
    for key in ("anchors", "mask"):
        if key in names and key not in fixed:
            drawn[key] = "draw"
    if "label_metric" in names and "label_metric" not in fixed:
        drawn["label_metric"] = st.sampled_from(OPTION_VALUES["label_metric"])
    for values in itertools.product(*(OPTION_VALUES[k] for k in grid)):
        options = {**dict(zip(grid, values, strict=True)), **drawn, **fixed}
        yield {k: options[k] for k in OPTION_NAMES if k in options}


@dataclass
class _Example:
    """One drawn problem: the case (for the reference) and the options passed to ``fn``."""

    case: LossCase
    passed: dict[str, Any]  # option name -> value (NumPy arrays for anchors and mask)


@st.composite
def _examples(
    draw: st.DrawFn, spec: Mapping[str, Any], dtype: str, max_batch: int, max_dim: int
) -> _Example:
    scalars: dict[str, Any] = {}
    for key, value in spec.items():
        if key not in ("anchors", "mask"):
            scalars[key] = draw(value) if isinstance(value, st.SearchStrategy) else value
    squared = scalars.get("squared", True)
    if squared and isinstance(spec.get("root_eps"), st.SearchStrategy):
        scalars["root_eps"] = 0.0  # a drawn root_eps applies to plain distances only
    min_batch = 1
    fixed_anchors = spec.get("anchors")
    if fixed_anchors is not None and not isinstance(fixed_anchors, (str, st.SearchStrategy)):
        idx = np.asarray(fixed_anchors).reshape(-1)
        if idx.dtype != np.bool_ and idx.size:
            min_batch = max(min_batch, int(np.max(np.where(idx < 0, -idx, idx + 1))))
    batch = draw(batch_sizes(min_batch, max(min_batch, max_batch)))
    dim = draw(dims(max_dim))
    emb = draw(embedding_arrays(batch, dim, coarse=dtype != "float64"))
    labels = draw(label_arrays(batch))
    passed = dict(scalars)
    if "anchors" in spec:
        a = _resolve(draw, spec["anchors"], anchor_specs(batch))
        passed["anchors"] = a if a is None or isinstance(a, int) else np.asarray(a)
    if "mask" in spec:
        m = _resolve(draw, spec["mask"], masks(batch))
        passed["mask"] = None if m is None else np.asarray(m)
    case = LossCase(
        embeddings=emb,
        labels=labels,
        label_distances=None,
        anchors=passed.get("anchors"),
        mask=passed.get("mask"),
        squared=squared,
        label_metric=passed.get("label_metric", "euclidean"),
        ties=passed.get("ties", "include"),
        reduction=passed.get("reduction", "mean"),
        root_eps=passed.get("root_eps", 0.0),
        eps=passed.get("eps", 1e-6),
    )
    return _Example(case, passed)


def _resolve(draw: st.DrawFn, value: Any, arrays: st.SearchStrategy[Any]) -> Any:
    """A fixed value, a strategy's draw, or, for the marker ``"draw"``, a draw of ``arrays``."""
    if isinstance(value, st.SearchStrategy):
        value = draw(value)
    if isinstance(value, str) and value == "draw":
        value = draw(arrays)
    return value


class _Mismatch(AssertionError):
    """One failing example (raised inside the property, turned into the final message)."""

    def __init__(self, example: _Example, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.example = example
        self.lines = lines


def assert_matches_reference(
    fn: Callable[..., Any],
    *,
    options: Mapping[str, Any] | None = None,
    dtype: str = "float64",
    gradient: Callable[..., Any] | bool | None = None,
    max_examples: int = 100,
    backend: str | registry.Backend = "numpy",
    max_batch: int = 12,
    max_dim: int = 6,
    seed: int | None = None,
) -> int:
    """Check ``fn(embeddings, labels, **options) -> loss`` against the float64 reference.

    The specification is :func:`logratio.testing.reference_loss` (Kim et al., CVPR 2019,
    Eq. 4; docs/design.md §1): for every anchor ``a`` and unordered pair of neighbours
    ``{i, j}`` (``≠ a``, allowed by the mask; a pair with ``Δ_ai = Δ_aj`` once with
    ``ties="include"``, not at all with ``"exclude"``)

        l(a, i, j) = ( log (D_ai+ε)/(D_aj+ε) − log (Δ_ai+ε)/(Δ_aj+ε) )²

    with ``D`` the squared (``squared=True``) or plain Euclidean embedding distance and ``Δ``
    the label distance; the loss is the mean over the counted triplets (``"sum"``: their sum,
    ``"none"``: the per-anchor sums).

    Hypothesis draws up to ``max_examples`` problems (embeddings on a grid with duplicate rows,
    (B,) or (B, p) labels with many ties, scales from far below ``eps`` to far above; B up to
    ``max_batch``, d up to ``max_dim``), converts embeddings and labels to ``backend``'s arrays
    of ``dtype`` (anchor and mask arrays keep their integer/boolean dtype) and calls ``fn``.
    On the first mismatch it shrinks the problem and this raises an AssertionError naming the
    option set, printing the smallest failing example, the expected and computed values and
    the tolerance.  An exception raised by ``fn`` counts as a mismatch.

    Args:
      fn: the implementation; returns the loss as a scalar (``"mean"``, ``"sum"``) or a
        (number of anchors,) array (``"none"``), of any array library.
      options: keyword options passed to ``fn`` (names of :data:`OPTION_NAMES`); a value may
        be a Hypothesis strategy to draw from, and ``anchors`` / ``mask`` may be ``"draw"``
        (arrays drawn per example: anchors as None, an int, an index array or a boolean
        mask; masks as None or a (B, B) boolean array).  An option not given keeps
        :func:`logratio.log_ratio_loss`'s default and is not passed.  ``None``: every option
        ``fn`` accepts (:func:`accepted_options`) is drawn per example from
        :data:`OPTION_VALUES`, so the examples cover every combination.
      dtype: ``"float64"`` or ``"float32"`` (float32 problems sit on a coarse grid that
        float32 represents and resolves exactly).
      gradient: ``None``: check the loss only; a callable ``gradient(embeddings, labels,
        **options) -> ∂loss/∂embeddings`` (B, d); ``True``: ``fn`` returns ``(loss, grad)``.
        With ``reduction="none"`` the gradient is that of the sum of the per-anchor losses.
      max_examples: the number of problems Hypothesis draws (before shrinking).
      backend: a name of :data:`logratio.testing.backends.NAMES` (or a ``Backend``): the array
        library of the inputs; the outputs may be of any library NumPy can read (PyTorch
        tensors are detached).
      max_batch, max_dim: the largest batch and embedding width drawn.
      seed: a seed for Hypothesis' draws (``None``: a random one each call).

    Tolerances (:data:`TOLERANCES`), relative to each quantity's own scale: the loss may be
    off by ``δ`` relative per log-distance, i.e. by ``2δ(1 + L)`` for a mean ``L`` and
    ``2δ(T + S)`` for a sum ``S`` of ``T`` terms (per anchor with ``"none"``), with
    ``δ = 1e-7`` in float64 and ``5e-4`` in float32; each gradient component by
    ``ρ · max|∂L/∂F|`` with ``ρ = 1e-6`` in float64 and ``5e-3`` in float32.  Values must
    be finite and of the expected shape.

    Returns the number of examples that passed.
    """
    if dtype not in TOLERANCES:
        raise ValueError(f"dtype must be one of {', '.join(TOLERANCES)}; got {dtype!r}")
    if max_examples < 1:
        raise ValueError(f"max_examples must be at least 1; got {max_examples!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable; got {type(fn).__name__}")
    if gradient is not None and gradient is not True and not callable(gradient):
        raise TypeError("gradient must be None, True or a callable")
    b = registry.get(backend) if isinstance(backend, str) else backend
    if options is None:
        names = accepted_options(fn)
        spec: dict[str, Any] = {k: st.sampled_from(OPTION_VALUES[k]) for k in names if k != "eps"}
    else:
        spec = dict(options)
        unknown = sorted(set(spec) - set(OPTION_NAMES))
        if unknown:
            raise ValueError(f"unknown options {unknown}; the options are {OPTION_NAMES}")
    passes = 0

    def check(example: _Example) -> None:
        nonlocal passes
        _check_example(fn, gradient, example, b, dtype)
        passes += 1

    test = given(_examples(spec, dtype, max_batch, max_dim))(check)
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    run = settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        print_blob=False,
    )(test)
    try:
        run()
    except _Mismatch as err:
        header = [
            f"{_name(fn)} does not match the float64 reference of the log-ratio loss "
            f"(logratio.testing.reference_loss; {dtype} on {b.label}).",
            f"option set: {_describe_options(err.example, spec)}",
        ]
        raise AssertionError("\n".join(header + err.lines)) from err.__cause__
    except HypothesisException as err:  # e.g. Flaky: fn does not give the same twice
        raise AssertionError(f"{_name(fn)}: {type(err).__name__}: {err}") from err
    return passes


def _check_example(
    fn: Callable[..., Any],
    gradient: Callable[..., Any] | bool | None,
    example: _Example,
    backend: registry.Backend,
    dtype: str,
) -> None:
    case = example.case
    delta, rho = TOLERANCES[dtype]
    with backend.context():
        f = backend.asarray(case.embeddings, dtype)
        y = backend.asarray(case.labels, dtype)
        kwargs = {}
        for key, value in example.passed.items():
            if isinstance(value, np.ndarray):
                value = backend.asarray(value)
            kwargs[key] = value
        # the reference of the inputs as fn receives them (exact on the grids; safe anyway)
        rounded = case.replace(embeddings=_to_float64(backend, f), labels=_to_float64(backend, y))
        want_grad = gradient is not None
        try:
            exp = expected(rounded, gradient=want_grad)
        except (ValueError, TypeError, IndexError) as err:
            lines = [*_example_lines(example), f"the reference rejects these options: {err}"]
            raise _Mismatch(example, lines) from err
        try:
            out = fn(f, y, **kwargs)
            if gradient is True:
                if not (isinstance(out, (tuple, list)) and len(out) == 2):
                    raise TypeError(f"gradient=True: fn must return (loss, grad); got {type(out)}")
                loss, grad = out
            else:
                loss = out
                grad = gradient(f, y, **kwargs) if callable(gradient) else None
            got_loss = _to_float64(backend, loss)
            got_grad = None if grad is None else _to_float64(backend, grad)
        except Exception as err:
            mismatch = _Mismatch(
                example, [*_example_lines(example), f"it raised {type(err).__name__}: {err}"]
            )
            raise mismatch from err
    lines = _compare_loss(got_loss, exp, case.reduction, delta)
    if got_grad is not None and not lines:
        lines = _compare_gradient(got_grad, exp.gradient(case.reduction), rho)
    if lines:
        raise _Mismatch(example, [*_example_lines(example), *lines])


def _compare_loss(got: np.ndarray, exp: Expected, reduction: str, delta: float) -> list[str]:
    want = np.asarray(exp.loss(reduction), dtype=np.float64)
    what = "loss" if reduction != "none" else "per-anchor losses"
    if want.shape == () and got.size == 1:
        got = got.reshape(())
    if got.shape != want.shape:
        return [f"{what}: expected shape {want.shape}, got shape {got.shape}",
                f"  expected {_fmt(want)}", f"  got      {_fmt(got)}"]  # fmt: skip
    tol = np.asarray(exp.loss_tolerance(reduction, delta), dtype=np.float64)
    err = np.abs(got - want)
    if np.all(np.isfinite(got)) and np.all(err <= tol):
        return []
    rule = "2δ(1 + L)" if reduction == "mean" else "2δ(T + S)"
    return [
        f"{what}: expected {_fmt(want, len(what) + 11)}",
        f"{' ' * len(what)}  got      {_fmt(got, len(what) + 11)}",
        f"{' ' * len(what)}  |difference| {_fmt(err)} > tolerance {_fmt(tol)} "
        f"({rule}, δ = {delta:g} per log-distance; {exp.num_triplets} counted triplets)",
    ]


def _compare_gradient(got: np.ndarray, want: np.ndarray, rho: float) -> list[str]:
    if got.shape != want.shape:
        return [f"gradient: expected shape {want.shape}, got shape {got.shape}"]
    scale = float(np.max(np.abs(want), initial=0.0))
    tol = rho * scale + 1e-300
    err = np.abs(got - want)
    if np.all(np.isfinite(got)) and np.all(err <= tol):
        return []
    worst = np.unravel_index(int(np.argmax(np.where(np.isfinite(err), err, np.inf))), err.shape)
    return [
        "gradient ∂loss/∂embeddings (the loss itself agrees):",
        f"  expected {_fmt(want)}",
        f"  got      {_fmt(got)}",
        f"  largest |difference| {_fmt(err[worst])} at row {worst[0]}, column {worst[1]} "
        f"> tolerance {tol:.3g} (ρ = {rho:g} × max|expected| = {scale:.6g})",
    ]


def _example_lines(example: _Example) -> list[str]:
    case = example.case
    lines = ["smallest failing example (shrunk by Hypothesis):"]
    shape = f"  # B = {case.batch}, d = {case.dim}"
    lines.append(f"  embeddings = {_fmt(case.embeddings, 15)}{shape}")
    lines.append(f"  labels = {_fmt(case.labels, 11)}")
    for key, value in example.passed.items():
        text = _fmt(value, len(key) + 5) if isinstance(value, np.ndarray) else repr(value)
        lines.append(f"  {key} = {text}")
    return lines


def _describe_options(example: _Example, spec: Mapping[str, Any]) -> str:
    """The options of the failing example, noting those drawn per example."""
    if not example.passed:
        return "none passed (every option at its default)"
    parts = []
    for key, value in example.passed.items():
        text = "<array below>" if isinstance(value, np.ndarray) else repr(value)
        given = spec.get(key)
        drawn = isinstance(given, st.SearchStrategy) or (isinstance(given, str) and given == "draw")
        parts.append(f"{key}={text}" + (" (drawn)" if drawn else ""))
    return ", ".join(parts)


def _fmt(x: Any, indent: int = 11) -> str:
    """``x`` as NumPy's ``array([...])`` (every value in full), continued ``indent`` columns
    in, or as a Python number."""
    a = np.asarray(x)
    with np.printoptions(threshold=100_000, linewidth=100, floatmode="unique"):
        text = np.array_repr(a) if a.ndim else repr(a.item())
    return text.replace("\n", "\n" + " " * indent)


def _to_float64(backend: registry.Backend, x: Any) -> np.ndarray:
    if backend.is_native(x):
        return np.asarray(backend.to_numpy(x), dtype=np.float64)
    if hasattr(x, "detach"):  # a torch tensor from a NumPy-input function
        x = x.detach().cpu()
    return np.asarray(x, dtype=np.float64)


def _name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{name}" if module and module != "__main__" else name
