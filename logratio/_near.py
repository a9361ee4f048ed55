"""Exact squared distances for the pairs the Gram identity cannot resolve.

A block's squared distances come from one matrix product (``‖a‖² + ‖b‖² − 2a·b``,
:class:`logratio._pairs.Operands`), whose rounding error is up to about
``0.25·c·(‖a‖² + ‖b‖²)`` with ``c = (4√d + 4)·u`` (u: the unit roundoff; docs/design.md §1.3).
For a pair much closer than that, the product's value is noise, and ``log`` and the ``1/D``
of the gradient turn the noise into an error of any size.  Such pairs are exactly the ones
the loss creates: it pulls pairs with equal labels to ``D ≈ ε·D_other/Δ_other``.

The rule: a pair whose product value is at most ``NEAR_FACTOR·c·(‖a‖² + ‖b‖²)`` is *near*,
and its squared distance is recomputed from the difference, ``Σ_k (a_k − b_k)²`` (relative
error a few u).  A recomputed distance of at most ``u²·(‖a‖² + ‖b‖²)`` (rows that differ by
about one rounding unit per coordinate, exact copies included) is set to exactly 0: the
gradient's matrix form ``rowsum(K)·f_a − (K·F)_a`` leaves noise ``u·K_ab·‖f‖`` that exceeds
such a pair's own term, so the pair counts as a duplicate (no gradient, docs/design.md §1.3).
Every other pair keeps the product's value, whose relative error is then below
``0.25/NEAR_FACTOR`` (under 1 %).

Near pairs are few in a typical batch (none at all in most blocks: the test is one pass that
a compiler fuses), and their count only costs O(count · d).  Eager backends gather them with
``nonzero``; under ``jax.jit`` (static shapes) a ``lax.while_loop`` takes them in chunks.
"""

from __future__ import annotations

from collections.abc import Callable

import array_api_compat

from ._validation import Array, Namespace
from .formula import Block

__all__ = ["NEAR_FACTOR", "count_near", "near_bound_factor", "refine_near", "refine_pairs"]

#: Pairs whose Gram value is at most ``NEAR_FACTOR·c·(‖a‖² + ‖b‖²)`` get exact differences.
#: The largest rounding error measured for the product (float32, d = 2 … 2048, normal,
#: uniform, sparse and heavy-tailed rows) was 0.25·c·(‖a‖² + ‖b‖²), so the values kept are
#: within 0.25/32 < 1 % of the exact distance.
NEAR_FACTOR = 32


def near_bound_factor(xp: Namespace, dim: int, dtype: object) -> float:
    """``NEAR_FACTOR·c``: a pair is near when its Gram value is at most this times
    ``‖a‖² + ‖b‖²`` (``c = (4√d + 4)·u``, :func:`logratio.distances.gram_noise_factor`)."""
    from .distances import gram_noise_factor

    return NEAR_FACTOR * gram_noise_factor(xp, dim, dtype)


#: ``count(xp, sq, near_row, near_col, ids) -> 0-d count``: :func:`count_near` or a compiled
#: version of it
CountFn = Callable[[Namespace, Array, Array, Array, "Array | None"], Array]


def _near_mask(sq: Array, near_row: Array, near_col: Array) -> Array:
    return sq <= near_row[:, None] + near_col[None, :]


def count_near(
    xp: Namespace, sq: Array, near_row: Array, near_col: Array, ids: Array | None
) -> Array:
    """The number of near pairs of a block (0-d), not counting an anchor with itself.

    ``ids``: the anchors' columns in a dense block (None when the columns are a reference
    set).  In a dense block every anchor's pair with itself is near (its Gram value is noise
    around 0); those ``r`` entries are read back by position and subtracted, which costs O(r)
    instead of an (r, n) comparison of indices.  A function of arrays only, so that a
    compiled version depends on nothing but their shapes and dtypes.
    """
    near = _near_mask(sq, near_row, near_col)
    count = xp.count_nonzero(near)
    if ids is not None and ids.shape[0] > 0:
        diagonal = xp.arange(ids.shape[0], device=array_api_compat.device(sq)) * sq.shape[1]
        count = count - xp.count_nonzero(xp.take(xp.reshape(near, (-1,)), diagonal + ids))
    return count


def refine_near(xp: Namespace, sq: Array, blk: Block, count: CountFn | None = None) -> Array:
    """``sq`` (the block's Gram values) with the near pairs' exact squared distances.

    Modifies and returns ``sq`` on eager backends (it is the block's own product); under JAX
    returns a new array.  ``count`` replaces :func:`count_near` (the PyTorch engine passes a
    compiled one).  Differentiable: the recomputed entries are functions of the rows (for
    the double backward of the PyTorch adapter); under JAX they carry the product's
    derivative instead (the two agree in exact arithmetic).
    """
    if array_api_compat.is_jax_namespace(xp):
        return _refine_traced(xp, sq, blk)
    refine_pairs(xp, sq, blk, count)
    return sq


def refine_pairs(
    xp: Namespace, sq: Array, blk: Block, count: CountFn | None = None
) -> tuple[Array, Array] | None:
    """:func:`refine_near` for eager backends: writes the near pairs' exact squared distances
    into ``sq`` and returns their positions ``(rows, cols)`` (row-major; in a dense block the
    anchors' pairs with themselves among them), or None when no pair other than those is
    near (``sq`` is then unchanged)."""
    ids = blk.ids if blk.dense else None
    found = (count_near if count is None else count)(xp, sq, blk.near_row, blk.near_col, ids)
    if int(found) == 0:
        return None
    near = _near_mask(sq, blk.near_row, blk.near_col)
    rows, cols = xp.nonzero(near)  # row-major: the order in which ``sq[near]`` is filled
    m, chunk = rows.shape[0], _chunk(blk)
    if m == 0:  # ``count`` may be an upper bound (logratio._block._candidates)
        return None
    parts = [
        _exact(xp, blk, rows[s : min(s + chunk, m)], cols[s : min(s + chunk, m)])
        for s in range(0, m, chunk)
    ]
    sq[near] = parts[0] if len(parts) == 1 else xp.concat(parts)
    return rows, cols


def _chunk(blk: Block) -> int:
    """Pairs recomputed at a time: their (chunk, d) differences are no larger than one
    (r, n) array of the block (and at least 256 pairs)."""
    r, n, d = blk.anchors.shape[0], blk.neighbours.shape[0], blk.anchors.shape[1]
    return max(256, (r * n) // max(d, 1))


def _exact(xp: Namespace, blk: Block, rows: Array, cols: Array) -> Array:
    """``Σ_k (f_a − f_b)²`` for the pairs (rows[k], cols[k]) of the block; 0 where it is at
    most ``u²·(‖f_a‖² + ‖f_b‖²)`` (a duplicate up to rounding)."""
    diff = xp.take(blk.anchors, rows, axis=0) - xp.take(blk.neighbours, cols, axis=0)
    exact = xp.sum(diff * diff, axis=1)
    d = blk.anchors.shape[1]
    norms = xp.take(blk.left[:, d], rows) + xp.take(blk.right[:, d + 1], cols)
    u = float(xp.finfo(exact.dtype).eps)
    return xp.where(exact > (u * u) * norms, exact, xp.zeros_like(exact))


def _refine_traced(jnp: Namespace, sq: Array, blk: Block) -> Array:
    """:func:`refine_near` with static shapes (``jax.jit``): the near pairs are taken
    ``_chunk`` at a time by ``jnp.nonzero(size=...)`` in a ``lax.while_loop``, skipped by a
    ``lax.cond`` when there are none.  The loop runs on stopped gradients and the result
    keeps the product's derivative (``where(near, exact + (sq − stop(sq)), sq)``), so that
    derivatives of the JAX rule (``hessian``) never differentiate the loop.
    """
    import jax

    r, n = sq.shape
    if r == 0 or n == 0:
        return sq
    stop = jax.lax.stop_gradient
    plain = stop(sq)
    stopped = blk._replace(
        anchors=stop(blk.anchors),
        neighbours=stop(blk.neighbours),
        left=stop(blk.left),
        right=stop(blk.right),
    )
    near = _near_mask(plain, blk.near_row, blk.near_col)
    if blk.dense:
        near = near & (blk.ids[:, None] != blk.cols[None, :])
    chunk = min(_chunk(blk), r * n)

    def body(state):
        values, todo = state
        i, j = jnp.nonzero(todo, size=chunk, fill_value=r)  # r: out of range, dropped
        ok = i < r
        i_in, j_in = jnp.where(ok, i, 0), jnp.where(ok, j, 0)
        exact = _exact(jnp, stopped, i_in, j_in)
        values = values.at[i, j].set(exact, mode="drop")
        todo = todo.at[i, j].set(False, mode="drop")
        return values, todo

    def refine(_):
        values, _ = jax.lax.while_loop(
            lambda state: jnp.any(state[1]), body, (jnp.zeros_like(plain), near)
        )
        return jnp.where(near, values + (sq - plain), sq)

    return jax.lax.cond(jnp.any(near), refine, lambda _: sq, None)
