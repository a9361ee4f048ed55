"""The block kernel's terms in the fewest passes, for arrays that can be written in place.

:meth:`logratio.formulas.log_ratio.LogRatio.terms` is written for every Array API namespace:
each step makes a new (r, n) array, and the pairs that add no gradient (the anchor with
itself, copies, masked-out pairs) are masked with ``where`` over whole (r, n) arrays. A
compiler (inductor, XLA) fuses those passes; NumPy and CuPy run each one, and the
elementwise passes, not the three matrix products, were most of the NumPy time
(docs/design.md §4.1).

This module computes the same terms (the same formulas, term for term) where the arrays are
NumPy's or CuPy's: every elementwise step writes into one of two (r, n) buffers (three for
Euclidean distances with the kernel) with the ufuncs' ``out=``, and the pairs off the formula
are handled by position, O(r + copies), instead of by a mask:

* the anchor's pair with itself (dense blocks) is the diagonal ``(a, ids[a])``;
* copies (squared distance exactly 0) are all among the near pairs that
  :func:`logratio._near.refine_pairs` recomputed: a pair that is not near has a Gram value
  above ``NEAR_FACTOR·c·(‖f_a‖² + ‖f_b‖²) ≥ 0``.

So after the diagonal is set to 0, ``sq`` is ``where(keep, sq, 0)`` of the general path
without a pass.  Blocks with a mask or ``ties="exclude"`` take the general path
(:meth:`~logratio.formulas.log_ratio.LogRatio.in_place` decides).
"""

from __future__ import annotations

import importlib
from typing import Any

import array_api_compat

from .._validation import Array, Namespace
from ..distances import direct_distances
from ..formula import Block, Terms

__all__ = ["array_module", "terms_in_place"]


def array_module(xp: Namespace) -> Any | None:
    """What writes in place for this namespace: NumPy or CuPy itself (whose ufuncs take
    ``out=``), PyTorch's functions with ``out=`` where autograd records nothing (inside the
    adapter's custom op), else None."""
    if array_api_compat.is_numpy_namespace(xp):
        return importlib.import_module("numpy")
    if array_api_compat.is_cupy_namespace(xp):
        return importlib.import_module("cupy")
    if array_api_compat.is_torch_namespace(xp):
        torch = importlib.import_module("torch")
        if not torch.is_grad_enabled() and not torch.compiler.is_compiling():
            return _TorchOut
    return None


def _torch_function(name: str) -> Any:
    """``torch.<name>``, looked up when called (torch is imported only by its users)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module("torch"), name)(*args, **kwargs)

    return staticmethod(call)


class _TorchOut:
    """The NumPy calls of :func:`terms_in_place` (``out=`` as NumPy's), for tensors."""

    sqrt = _torch_function("sqrt")
    log = _torch_function("log")
    divide = _torch_function("div")
    abs = _torch_function("abs")
    multiply = _torch_function("mul")
    einsum = _torch_function("einsum")


def terms_in_place(xp: Namespace, opts: Any, blk: Block, want_kernel: bool) -> Terms:
    """:func:`logratio.formulas.log_ratio.LogRatio.terms` for NumPy or CuPy arrays, no mask
    and ties included, writing ``blk.pairs`` (the block's own product) in place.

    With ``D`` the embedding distance, ``U_ab = log(D_ab + ε) − log(Δ_ab + ε)`` and
    ``n = |N|``: ``S_a = n·Σ_b (U_ab − Ū_a)²`` and ``K_ab = 4 n (U_ab − Ū_a) / (D_ab + ε)``
    (squared) or ``2 n (U_ab − Ū_a) / ((D_ab + ε)·D_ab)`` (Euclidean), zero for copies and the
    anchor itself (docs/design.md §1.1-§1.2).  Two (r, n) buffers (a third for Euclidean
    distances with the kernel), about a dozen passes.
    """
    np: Any = array_module(xp)  # NumPy or CuPy: the caller checked
    eps = float(blk.values[0])
    root_eps = float(blk.values[1])
    r = blk.anchors.shape[0]
    others = blk.cols.shape[0] - 1 if blk.dense else blk.cols.shape[0]
    n = max(others, 0)
    dtype = blk.anchors.dtype
    sq: Any = blk.pairs
    found = blk.refined
    # positions that add no gradient: the diagonal (dense), then the copies
    if blk.dense:
        diag = (xp.arange(r, device=blk.device), blk.ids)
        sq[diag] = 0
    zero = _copies(xp, sq, found, diag if blk.dense else None)
    # buffer 1: D (and then D + ε); buffer 2: Δ + ε, then U, U − Ū and K
    if opts.squared:
        dist = None
    elif opts.root_eps == 0:
        np.sqrt(sq, out=sq)  # sq >= 0 everywhere now
        dist = sq
    else:
        sq += root_eps
        np.sqrt(sq, out=sq)
        if blk.dense:
            sq[diag] = 0  # the anchor itself: distance 0 (not sqrt(root_eps))
        dist = sq
    if dist is not None and want_kernel:
        dist = xp.asarray(dist, copy=True)  # the kernel's D (buffer 3, Euclidean only)
    dpe = sq
    dpe += eps
    if blk.label_distances is not None:
        lab = blk.label_distances + eps  # a new buffer: never write the caller's array
    elif _one_column(opts.label_metric, blk.labels, blk.neighbour_labels, dtype):
        # |a − b| (or its square) of scalar labels: one new buffer, written in place
        lab = blk.labels[:, 0:1] - blk.neighbour_labels[None, :, 0]  # type: ignore[index]
        if opts.label_metric == "sqeuclidean":
            np.multiply(lab, lab, out=lab)
        else:
            np.abs(lab, out=lab)
        lab += eps
    else:
        lab = direct_distances(xp, blk.labels, blk.neighbour_labels, opts.label_metric)
        if lab.dtype != dtype or callable(opts.label_metric):
            lab = xp.astype(lab, dtype) + eps  # a callable's array is not ours to write
        else:
            lab += eps  # a named metric's distances are a new array
    if blk.dense:
        lab[diag] = eps  # Δ_aa = 0 (given or callable label distances may say otherwise)
    u = lab
    np.divide(dpe, lab, out=u)
    np.log(u, out=u)  # U; 0 on the diagonal (log(ε/ε))
    mean = xp.sum(u, axis=1) / (n if n > 0 else 1)
    u -= mean[:, None]
    if blk.dense:
        u[diag] = 0
    centred = u
    row_loss = n * _row_squares(np, centred)
    row_count = xp.full((r,), n * (n - 1) / 2, dtype=dtype, device=blk.device)
    if not want_kernel:
        return Terms(row_loss, row_count, None)
    kernel = centred
    # the general path's order of operations: (c·g) / denominator
    if dist is None:
        kernel *= 4 * n
        np.divide(kernel, dpe, out=kernel)
    else:
        dpe *= dist  # (D + ε)·D; 0 for copies, which are zeroed below
        if zero is not None:
            dpe[zero] = 1
        if blk.dense:
            dpe[diag] = 1
        kernel *= 2 * n
        np.divide(kernel, dpe, out=kernel)
    if zero is not None:
        kernel[zero] = 0
    return Terms(row_loss, row_count, kernel)


def _one_column(metric: Any, labels: Any, others: Any, dtype: Any) -> bool:
    """Scalar labels in the compute dtype under a named metric: the distance is a function
    of one difference (Euclidean and city-block ``|a − b|``, squared ``(a − b)²``)."""
    return (
        isinstance(metric, str) and labels is not None and others is not None
        and labels.shape[1] == 1 and labels.dtype == dtype
    )  # fmt: skip


def _copies(xp: Any, sq: Array, found: tuple[Array, Array] | None, diag: Any) -> Any:
    """The positions of the copies among the refined pairs (the diagonal excluded), or
    None."""
    if found is None:
        return None
    rows, cols = found
    hit = sq[rows, cols] == 0
    if diag is not None:
        hit &= diag[1][rows] != cols
    if not bool(xp.any(hit)):
        return None
    return rows[hit], cols[hit]


def _row_squares(np: Any, x: Array) -> Array:
    """``Σ_b x_ab²`` per row without an (r, n) temporary."""
    return np.einsum("ij,ij->i", x, x)
