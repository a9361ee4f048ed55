"""The contract between the engine and a loss: a *formula* of one block of anchors.

The engine (:mod:`logratio._dense`, :mod:`logratio._block`, the framework adapters) owns the
loop over blocks of anchor rows, the pairwise product, the gradient's assembly, the
reductions, the autograd rules and the global-batch gather.  It knows no loss.  A loss is a
:class:`Formula`: a hashable value holding its own validated options, and pure functions of
one :class:`Block` that return its :class:`Terms` (docs/design.md §7).

The engine serves two pairwise quantities, chosen by :attr:`Formula.pairs`:

* ``"sqeuclidean"``: ``P_ab = ‖f_a − f_b‖²`` of the rows (centred; near pairs exact,
  docs/design.md §1.3).  The kernel ``K_ab`` is ``2 ∂L/∂P_ab``: the engine adds
  ``K_ab (f_a − f_b)`` to ``∇f_a`` and subtracts it from ``∇f_b``;
* ``"cosine"``: ``P_ab = ⟨ẑ_a, ẑ_b⟩`` of the L2-normalised rows.  The kernel is
  ``∂L/∂P_ab``: ``∇ẑ_a`` gains ``K_ab ẑ_b`` and ``∇ẑ_b`` gains ``K_ab ẑ_a``, and the engine
  pulls ``∇ẑ`` back through the normalisation.

A formula registers its class (:func:`register`) so that a framework can carry it through a
compiled graph as plain values (:func:`encode` / :func:`decode`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, Literal, NamedTuple, Protocol, runtime_checkable

from ._validation import Array, Namespace

__all__ = [
    "Block",
    "Formula",
    "InPlace",
    "PairKind",
    "Terms",
    "decode",
    "encode",
    "formula_type",
    "is_registered",
    "register",
]

#: The pairwise quantity a formula reads: squared Euclidean distances of the rows, or inner
#: products of the L2-normalised rows (cosine similarity).
PairKind = Literal["sqeuclidean", "cosine"]


class Block(NamedTuple):
    """One block of r anchors against the n neighbours: every array a formula may read.

    ``pairs`` is the block's pairwise quantity, computed by the engine before the formula
    runs.  Label data is either ``label_distances`` or the two label arrays; the formula
    computes the distances it needs from them.  ``values`` are the formula's numeric options
    as 0-d arrays of the compute dtype (:meth:`Formula.values`), so that one compiled kernel
    serves every value.
    """

    left: Array  # (r, k) the anchors' rows of the product's left operand
    right: Array  # (n, k)
    # (r,) and (n,), squared distances only (None for cosine): a pair is near, and its
    # distance recomputed exactly, when its product value is below near_row[a] + near_col[b]
    near_row: Array | None
    near_col: Array | None
    ids: Array  # (r,) the anchors' rows in the batch
    cols: Array  # (n,) the neighbours' rows in the batch
    anchors: Array  # (r, d) the anchors' features (centred or normalised rows)
    neighbours: Array  # (n, d)
    label_distances: Array | None  # (r, n), or None: computed from the labels
    labels: Array | None  # (r, p) the anchors' labels
    neighbour_labels: Array | None  # (n, p)
    mask: Array | None  # (r, n) bool: the pairs allowed
    weights: Array | None  # (r,) per-anchor weights of the gradient (reduction="none")
    values: tuple[Array, ...]  # the formula's numeric options, 0-d arrays
    dense: bool  # the neighbours are the whole batch: the anchor itself is excluded
    device: Any  # where new arrays are made (no device lookup inside the step)
    pairs: Array | None = None  # (r, n) the pairwise quantity; None until the engine sets it
    # eager NumPy / CuPy only: the positions (rows, cols) whose squared distances were
    # recomputed exactly (copies are among them), or None
    refined: tuple[Array, Array] | None = None
    # (n,) per-neighbour statistics over the whole batch (Formula.columns), or None
    columns: Array | None = None


class Terms(NamedTuple):
    """What one block of anchors contributes."""

    row_loss: Array  # (r,) the anchors' losses S_a
    row_count: Array  # (r,) the anchors' counts (the "mean" reduction divides by their sum)
    # (r, n) the kernel K_ab (see the module docstring); zero where a pair adds no gradient;
    # None when not asked for
    kernel: Array | None


@runtime_checkable
class Formula(Protocol):
    """A loss of one block of anchors: hashable, its options validated on creation.

    Implemented as a frozen dataclass whose fields are the loss's options (bool, int, float,
    str, or a callable ``label_metric``) and registered with :func:`register`.
    """

    #: the registry's name of the formula
    name: ClassVar[str]
    #: which pairwise quantity the engine computes for it
    pairs: ClassVar[PairKind]

    def values(self) -> tuple[float, ...]:
        """The numeric options the kernel reads from :attr:`Block.values`."""
        ...

    def canonical(self) -> Formula:
        """This formula with its :meth:`values` replaced by fixed ones: what a compiled
        kernel depends on (one compilation serves every value)."""
        ...

    def terms(self, xp: Namespace, blk: Block, want_kernel: bool) -> Terms:
        """The block's per-anchor losses, counts and (with ``want_kernel``) its kernel.

        Numeric options are read from ``blk.values``, never from ``self``: a compiled
        kernel runs the :meth:`canonical` formula.  A formula that measures labels keeps its
        metric in a field named ``label_metric`` (a callable one is applied before a
        compiled graph, which carries names only)."""
        ...

    def in_place(self, xp: Namespace, mask: Array | None) -> InPlace | None:
        """An evaluation that writes NumPy / CuPy buffers in place for this call, or None."""
        ...

    # Optional: ``columns(xp, labels, label_distances, neighbours, block_size) -> (n,) array
    # or None``, a statistic of every neighbour over the whole batch that the block terms
    # read as ``Block.columns`` (computed once per call, before the blocks).
    # Optional: ``block_weight: ClassVar[int]``, the default block's rows are divided by it
    # (a formula that keeps several times the (r, n) temporaries of the log-ratio loss);
    # ``compile_by_default: ClassVar[bool]``, True where PyTorch compiles it unless told not.


class InPlace(Protocol):
    """``terms`` for arrays that can be written in place (NumPy, CuPy): the same results.

    ``blk.pairs`` is the block's own product, which it may overwrite; ``blk.refined`` lists
    the pairs recomputed exactly.
    """

    def __call__(self, xp: Namespace, blk: Block, want_kernel: bool) -> Terms: ...


_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make a formula class known by its ``name`` (for :func:`decode`)."""
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} must define a class attribute name (a str)")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a frozen dataclass")
    for f in dataclasses.fields(cls):
        if isinstance(f.default, bool | int | float | str):
            continue
        raise TypeError(
            f"{cls.__name__}.{f.name} must have a default of type str, bool, int or float "
            f"(the types a compiled graph carries); got {f.default!r}"
        )
    known = _REGISTRY.get(name)
    if known is not None and _where(known) != _where(cls):
        raise ValueError(f"a formula named {name!r} is already registered ({_where(known)})")
    _REGISTRY[name] = cls
    return cls


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def is_registered(formula: Any) -> bool:
    """Whether ``formula``'s class is the one registered under its name."""
    name = getattr(type(formula), "name", None)
    return isinstance(name, str) and _REGISTRY.get(name) is type(formula)


def formula_type(name: str) -> type:
    """The registered formula class called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"no formula named {name!r}; known: {sorted(_REGISTRY)}") from None


#: what a separator of string options may not contain
_SEP = "\x1f"


def encode(formula: Any) -> tuple[str, str, list[Any]]:
    """``(name, words, numbers)``: the formula as values a compiled graph can carry (a
    PyTorch custom op's schema).  Fields with a string default are words, joined; the others
    are numbers (bool, int, float), in field order.  A callable option (a ``label_metric``)
    cannot be encoded: the caller replaces it first."""
    words, numbers = [], []
    for f in dataclasses.fields(formula):
        value = getattr(formula, f.name)
        if isinstance(f.default, str):
            if not isinstance(value, str) or _SEP in value:
                raise TypeError(f"{type(formula).name}.{f.name} cannot be encoded: {value!r}")
            words.append(value)
        elif isinstance(value, bool | int | float):
            numbers.append(value)
        else:
            raise TypeError(f"{type(formula).name}.{f.name} cannot be encoded: {value!r}")
    return type(formula).name, _SEP.join(words), numbers


@functools.lru_cache(maxsize=256)
def _decode(name: str, words: str, numbers: tuple[Any, ...]) -> Any:
    cls = formula_type(name)
    text = iter(words.split(_SEP))
    other = iter(numbers)
    kwargs = {
        f.name: next(text) if isinstance(f.default, str) else next(other)
        for f in dataclasses.fields(cls)
    }
    return cls(**kwargs)


def decode(name: str, words: str, numbers: list[Any] | tuple[Any, ...]) -> Any:
    """The inverse of :func:`encode` (cached: a repeated formula is validated once)."""
    return _decode(name, words, tuple(numbers))
