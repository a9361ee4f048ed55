"""The two pairwise quantities of the engine: squared distances and cosine similarities.

A formula names one (:attr:`logratio.formula.Formula.pairs`); everything the engine does that
depends on it lives here: how the rows are prepared, the per-call operands of the block
product, the gradient's parts from a block's kernel, the pull-back to the embeddings as given,
and the pair derivatives along a tangent (docs/design.md §7.2).

* :class:`SqEuclidean`: rows centred (distances are translation invariant), ``P_ab =
  ‖f_a − f_b‖²`` from one product of augmented operands with exact near pairs
  (docs/design.md §1.3); ``∇f_a += K_ab (f_a − f_b)``, ``∇f_b −= K_ab (f_a − f_b)``.
* :class:`Cosine`: rows L2-normalised (``ẑ = z / ‖z‖``; a zero row stays zero), ``P_ab =
  ⟨ẑ_a, ẑ_b⟩``; ``∇ẑ_a += K_ab ẑ_b``, ``∇ẑ_b += K_ab ẑ_a``, then
  ``∇z = (∇ẑ − ẑ ⟨ẑ, ∇ẑ⟩) / ‖z‖`` (zero for a zero row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import array_api_compat

from ._near import CountFn, near_bound_factor, refine_near
from ._validation import Array, Namespace
from .formula import Block

__all__ = ["Cosine", "Operands", "PairOps", "SqEuclidean", "pair_ops"]


@dataclass(frozen=True)
class Operands:
    """Per-call operands shared by every block."""

    left: Array  # (B, k): the anchors' side of the block product
    right: Array  # (n, k): the neighbours' side
    near_row: Array | None  # (B,) squared distances: NEAR_FACTOR·c·‖f_a‖² (logratio._near)
    near_col: Array | None  # (n,)
    rows: Array  # (B,) arange
    cols: Array  # (n,) the neighbours' row indices
    neighbours: Array  # (n, d) the neighbours' features
    columns: Array | None = None  # (n,) the formula's per-neighbour statistics, if any


class PairOps:
    """What depends on the pairwise quantity; the two subclasses are stateless."""

    kind: ClassVar[str]

    @staticmethod
    def prepare(xp: Namespace, f: Array) -> tuple[Array, Array, Array]:
        """``(features, row_scale, nonfinite)`` from rows in the compute dtype: the rows the
        blocks read, a per-row quantity (squared norms of the centred rows, or norms), and
        the 0-d guard: 0, or NaN when a row is not finite."""
        raise NotImplementedError

    @staticmethod
    def operands(xp: Namespace, f: Array, row_scale: Array, nb: slice) -> Operands:
        raise NotImplementedError

    @staticmethod
    def product(xp: Namespace, blk: Block, count: CountFn | None = None) -> Array:
        """The block's (r, n) pairwise quantity."""
        raise NotImplementedError

    @staticmethod
    def grad_parts(xp: Namespace, k: Array, fr: Array, fn: Array) -> tuple[Array, Array]:
        """The anchors' (r, d) and neighbours' (n, d) gradient parts of a block's kernel."""
        raise NotImplementedError

    @staticmethod
    def pullback(xp: Namespace, features: Array, row_scale: Array, grad: Array) -> Array:
        """The gradient with respect to the rows as given, from that of the prepared rows."""
        return grad

    @staticmethod
    def tangent(xp: Namespace, features: Array, row_scale: Array, t: Array) -> Array:
        """A tangent of the rows as given, as a tangent of the prepared rows."""
        raise NotImplementedError

    @staticmethod
    def tangent_pairs(xp: Namespace, fr: Array, tr: Array, fn: Array, tn: Array) -> Array:
        """(r, n): the derivative of each pair's quantity along the tangent, divided by the
        factor that the kernel already holds (2 for squared distances, 1 for cosine)."""
        raise NotImplementedError


class SqEuclidean(PairOps):
    kind = "sqeuclidean"

    @staticmethod
    def prepare(xp: Namespace, f: Array) -> tuple[Array, Array, Array]:
        batch = f.shape[0]
        if batch > 0:  # the mean of no rows would warn and be NaN
            f = f - _grid_mean(xp, f)
        sq_norms = xp.sum(f * f, axis=1)
        return f, sq_norms, _guard(xp, f, sq_norms)

    @staticmethod
    def operands(xp: Namespace, f: Array, row_scale: Array, nb: slice) -> Operands:
        dev = array_api_compat.device(f)
        batch = f.shape[0]
        ones = xp.ones((batch, 1), dtype=f.dtype, device=dev)
        near = near_bound_factor(xp, f.shape[1], f.dtype)
        rows = xp.arange(batch, device=dev)
        return Operands(
            left=xp.concat([-2 * f, row_scale[:, None], ones], axis=1),
            right=xp.concat([f, ones, row_scale[:, None]], axis=1)[nb, ...],
            near_row=near * row_scale,
            near_col=(near * row_scale)[nb],
            rows=rows,
            cols=rows[nb],
            neighbours=f[nb, ...],
        )

    @staticmethod
    def product(xp: Namespace, blk: Block, count: CountFn | None = None) -> Array:
        """One product of the augmented operands, then exact differences for the pairs near
        its rounding noise (:func:`logratio._near.refine_near`; ``count`` as there)."""
        return refine_near(xp, blk.left @ blk.right.T, blk, count)

    @staticmethod
    def grad_parts(xp: Namespace, k: Array, fr: Array, fn: Array) -> tuple[Array, Array]:
        # Σ_b K_ab (f_a − f_b) = rowsum(K)·f_a − (K·F)_a, and −Σ_a K_ab (f_a − f_b) for b
        anchor = xp.sum(k, axis=1)[:, None] * fr - k @ fn
        neighbour = xp.sum(k, axis=0)[:, None] * fn - k.T @ fr
        return anchor, neighbour

    @staticmethod
    def tangent(xp: Namespace, features: Array, row_scale: Array, t: Array) -> Array:
        # only differences of rows matter: centred like the features
        return t - xp.mean(t, axis=0) if t.shape[0] > 0 else t

    @staticmethod
    def tangent_pairs(xp: Namespace, fr: Array, tr: Array, fn: Array, tn: Array) -> Array:
        # (f_a − f_b)·(t_a − t_b) = f_a·t_a + f_b·t_b − f_a·t_b − f_b·t_a
        ftr, ftn = xp.sum(fr * tr, axis=1), xp.sum(fn * tn, axis=1)
        return ftr[:, None] + ftn[None, :] - fr @ tn.T - tr @ fn.T


class Cosine(PairOps):
    kind = "cosine"

    @staticmethod
    def prepare(xp: Namespace, f: Array) -> tuple[Array, Array, Array]:
        # each row scaled by its largest entry first: no overflow or underflow of ‖z‖² for
        # any finite row (the similarity ignores scale)
        top = xp.max(xp.abs(f), axis=1) if f.shape[1] > 0 else xp.sum(f, axis=1)
        safe = xp.where(top > 0, top, xp.ones_like(top))
        scaled = f / safe[:, None]
        length = xp.sqrt(xp.sum(scaled * scaled, axis=1))
        unit = scaled / xp.where(length > 0, length, xp.ones_like(length))[:, None]
        norms = xp.where(top > 0, length * top, xp.zeros_like(top))
        return unit, norms, _guard(xp, f, top)

    @staticmethod
    def operands(xp: Namespace, f: Array, row_scale: Array, nb: slice) -> Operands:
        rows = xp.arange(f.shape[0], device=array_api_compat.device(f))
        return Operands(
            left=f, right=f[nb, ...], near_row=None, near_col=None, rows=rows, cols=rows[nb],
            neighbours=f[nb, ...],
        )  # fmt: skip

    @staticmethod
    def product(xp: Namespace, blk: Block, count: CountFn | None = None) -> Array:
        return blk.left @ blk.right.T

    @staticmethod
    def grad_parts(xp: Namespace, k: Array, fr: Array, fn: Array) -> tuple[Array, Array]:
        return k @ fn, k.T @ fr

    @staticmethod
    def pullback(xp: Namespace, features: Array, row_scale: Array, grad: Array) -> Array:
        return _project(xp, features, row_scale, grad)

    @staticmethod
    def tangent(xp: Namespace, features: Array, row_scale: Array, t: Array) -> Array:
        return _project(xp, features, row_scale, t)

    @staticmethod
    def tangent_pairs(xp: Namespace, fr: Array, tr: Array, fn: Array, tn: Array) -> Array:
        # d⟨ẑ_a, ẑ_b⟩ = ⟨dẑ_a, ẑ_b⟩ + ⟨ẑ_a, dẑ_b⟩
        return tr @ fn.T + fr @ tn.T


def _project(xp: Namespace, unit: Array, norms: Array, g: Array) -> Array:
    """``(g − ẑ ⟨ẑ, g⟩) / ‖z‖`` per row: the normalisation's Jacobian (symmetric); zero rows
    get zero."""
    radial = xp.sum(unit * g, axis=1)[:, None] * unit
    inv = xp.where(norms > 0, 1 / xp.where(norms > 0, norms, xp.ones_like(norms)), 0.0)
    return (g - radial) * inv[:, None]


def _guard(xp: Namespace, f: Array, per_row: Array) -> Array:
    # the blocks' tests would read a NaN pair as a copy or not near (no loss, no gradient):
    # the non-finite rows poison the result instead, at the cost of one pass over B values
    if f.shape[0] > 0:
        return 0 * xp.max(per_row)
    return xp.zeros((), dtype=f.dtype, device=array_api_compat.device(f))


def _grid_mean(xp: Namespace, f: Array) -> Array:
    """The column means of ``f`` rounded to a power-of-two grid about 2⁻²¹ of ``max |f|``.

    Centring only has to bring the rows near the origin (docs/design.md §1.3), and a rounded
    mean makes ``f − mean`` one exact-operand subtraction: a compiler that evaluates the
    centring twice (XLA fuses it into each consumer, one with ``x − s·(1/n)`` contracted into
    an FMA) still gets bit-identical rows, so duplicates stay exact duplicates in every operand
    of the Gram product.  The grid step comes from ``max |f|`` (exact in any evaluation order),
    rounded half-way between powers of two so that power-of-two data sit far from a step
    boundary.
    """
    top = xp.max(xp.abs(f))
    top = xp.where(top > 0, top, xp.ones_like(top))
    tiny = math.log2(float(xp.finfo(f.dtype).smallest_normal))  # keep the step normal
    step = 2.0 ** xp.clip(xp.floor(xp.log2(top) + 0.5) - 21, min=tiny)
    return xp.round(xp.mean(f, axis=0) / step) * step


_KINDS: dict[str, type[PairOps]] = {"sqeuclidean": SqEuclidean, "cosine": Cosine}


def pair_ops(kind: str) -> type[PairOps]:
    """The operations of the pairwise quantity ``kind`` (a formula's ``pairs``)."""
    try:
        return _KINDS[kind]
    except KeyError:
        raise ValueError(f"pairs must be one of {sorted(_KINDS)}; got {kind!r}") from None
