"""The PyTorch engine: the core's block kernel compiled with inductor, on request.

The dense loss spends its time in (block, B) elementwise passes between three matrix products
(docs/design.md §4).  Eager PyTorch runs each pass as its own kernel over memory;
``torch.compile`` (inductor: C++/OpenMP on the CPU, Triton on CUDA) fuses them.  The engine
compiles exactly one function, :func:`logratio._block.block_step` (the core's own code: no
mathematics is written again), and the custom op's implementation calls it once per block of
anchors.  The loop over blocks, the argument checks and the assembly of the gradient stay
eager: they are O(B·d) and depend on values and Python ints that would otherwise be baked
into the compiled graph.

One compiled function is kept per *key*: (the formula's canonical form, device type, dtype,
want_grad and which of the block's optional arrays are present). Each key gets its own copy
of the function's code object, so Dynamo's per-code cache (and its recompile limit) holds
that key's graphs only; shapes are dynamic (``dynamic=True``), so a new batch size or the
shorter last block does not recompile (sizes 0 and 1 are specialised, as Dynamo always
does).

The engine is off by default: ``compile=True`` (a :class:`~logratio.options.RunSettings`
field, hence a keyword of every loss) or the environment variable ``LOGRATIO_COMPILE=1``
turn it on (docs/design.md §4.2 has the measurements behind that choice).  If compiling
fails (no C++ compiler, an unsupported platform or device), the engine warns once, remembers
the failure for that key and runs the eager core: results are the same, only slower.
"""

from __future__ import annotations

import functools
import os
import types
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.fx.experimental._config as _shape_config

from .._block import Step, block_step
from .._near import count_near
from .._pairs import pair_ops
from ..formula import Block
from ..options import RunSettings

__all__ = [
    "CUDA_MEMORY_FRACTION",
    "ENV_VAR",
    "CompileFallbackWarning",
    "block_size_for",
    "cuda_rows",
    "enabled",
    "reset",
    "run_step",
]

#: ``LOGRATIO_COMPILE=0`` turns the engine off for the process (``1``, the default: on).
ENV_VAR = "LOGRATIO_COMPILE"


# Dynamo notes every lru_cache it traces through; array_api_compat's type checks are cached
# pure functions of a type (safe to trace), and the note would reach every user's first call
warnings.filterwarnings(
    "ignore",
    message=r"Dynamo detected a call to a `functools.lru_cache`-wrapped function at '_helpers",
    category=UserWarning,
)


class CompileFallbackWarning(RuntimeWarning):
    """The engine could not compile the core and runs it eagerly (the same results)."""


def enabled(run: RunSettings, device: torch.device, formula: Any = None) -> bool:
    """Whether calls with the run settings ``run`` on ``device`` go through the compiled
    kernel.

    ``run.compile`` decides when given; otherwise ``LOGRATIO_COMPILE`` (read on every call,
    so a test or a script can switch it: ``1`` on, ``0`` off).  Unset, calls run eagerly, as
    PyTorch's own losses do: the eager path writes its passes in place and matches the
    compiled kernel's speed on the CPU, without a first call that compiles for seconds, a
    compilation per option set, or one per DDP rank (docs/design.md §4.2).  A formula whose
    eager terms measured slower than its compiled kernel sets ``compile_by_default =
    True`` (y-aware InfoNCE, docs/design.md §8).
    """
    if run.compile is not None:
        return run.compile
    switch = os.environ.get(ENV_VAR, "").strip().lower()
    if switch in {"0", "false", "off", "no"}:
        return False
    on = switch in {"1", "true", "on", "yes"} or getattr(formula, "compile_by_default", False)
    return bool(on) and device.type in {"cpu", "cuda"}


#: On a CUDA device the default block is as many anchor rows as this fraction of the free
#: memory holds, at about ``BLOCK_TEMPORARIES`` (block, B) arrays alive at once (a fused
#: kernel keeps fewer; the eager one about a dozen).  Large blocks are what a GPU needs:
#: each block costs a few kernel launches whatever its size.
CUDA_MEMORY_FRACTION = 0.25
BLOCK_TEMPORARIES = 12


def block_size_for(device: torch.device, batch: int, itemsize: int) -> int | None:
    """The default block size on ``device``: None (the core's, cache-sized) on a CPU; on
    CUDA, the rows of (block, B) temporaries that fit ``CUDA_MEMORY_FRACTION`` of the free
    memory, at least the CPU default and at most the batch."""
    if device.type != "cuda" or batch == 0:
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return cuda_rows(free, batch, itemsize)


def cuda_rows(free_bytes: int, batch: int, itemsize: int) -> int:
    """``block_size_for`` given the free bytes (a pure function, tested without a GPU)."""
    from .._problem import default_block_size

    rows = int(CUDA_MEMORY_FRACTION * free_bytes) // (BLOCK_TEMPORARIES * itemsize * batch)
    return max(default_block_size(batch), min(batch, rows))


# one compiled function per key; None where compiling failed
_compiled: dict[tuple[Any, ...], Callable[..., Any] | None] = {}


_warned = False


def reset() -> None:
    """Forget every compiled function and failure, and warn again (tests)."""
    global _warned
    _compiled.clear()
    _warned = False


def run_step(xp: Any, formula: Any, blk: Block, want_grad: bool) -> Step:
    """:func:`~logratio._block.block_step`, compiled for this block's key (the eager step
    if compiling that key failed).

    The block's pairwise quantity is computed first, outside the kernel: the refinement of
    squared distances (:mod:`logratio._near`) gathers a data-dependent number of pairs,
    which a full graph cannot hold; its test for near pairs is compiled on its own (one fused
    pass).  The product itself is an external call in inductor's graphs either way.
    """
    ops = pair_ops(formula.pairs)
    count = None
    if ops.kind == "sqeuclidean":
        count_key = ("count", *_count_key(blk))
        count = _guarded(_compiled_or_none(count_key), count_key)
    blk = blk._replace(pairs=ops.product(xp, blk, count))
    canonical = _canonical(formula)
    key = _key(canonical, blk, want_grad)
    fn = _compiled_or_none(key)
    if fn is not None:
        try:
            return _call(fn, xp, canonical, blk, want_grad)
        except torch.OutOfMemoryError:  # not the compiler's fault: the caller must see it
            raise
        except Exception as err:
            _fail(key, err)
    return block_step(xp, formula, blk, want_grad)


def _count_key(blk: Block) -> tuple[Any, ...]:
    return (blk.left.device.type, blk.left.dtype, blk.dense)


def _guarded(fn: Callable[..., Any] | None, key: tuple[Any, ...]) -> Callable[..., Any]:
    """The compiled near-pair count, or the eager one (after a failure: warned once)."""
    if fn is None:
        return count_near

    def count(xp: Any, *arrays: Any) -> Any:
        try:
            return _call(fn, xp, *arrays)
        except torch.OutOfMemoryError:
            raise
        except Exception as err:
            _fail(key, err)
            return count_near(xp, *arrays)

    return count


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    # no duck sizing: a block whose rows and columns happen to be equal in number (a single
    # block) must not tie the two sizes in the graph
    with _shape_config.patch(use_duck_shape=False):
        return fn(*args)


def _compiled_or_none(key: tuple[Any, ...]) -> Callable[..., Any] | None:
    fn = _compiled.get(key, _MISSING)
    if fn is _MISSING:
        fn = _compiled[key] = _compile(key)
    return fn


def _fail(key: tuple[Any, ...], err: Exception) -> None:
    _compiled[key] = None
    _warn(type(err).__name__, str(err).splitlines()[0] if str(err) else "")


_MISSING: Any = object()


@functools.lru_cache(maxsize=64)
def _canonical(formula: Any) -> Any:
    """Formulas that differ only in values the step reads from the block map to one object:
    one set of Dynamo guards."""
    return formula.canonical()


def _key(formula: Any, blk: Block, want_grad: bool) -> tuple[Any, ...]:
    """What a compiled graph depends on besides shapes: the canonical formula (its values
    come from the block), the device, dtype, which optional arrays the block has, and
    whether it makes a gradient."""
    names = ("label_distances", "labels", "mask", "weights", "columns")
    present = tuple(getattr(blk, name) is not None for name in names)
    dev = blk.left.device
    return (formula, dev.type, blk.left.dtype, present, blk.dense, want_grad)


def _compile(key: tuple[Any, ...]) -> Callable[..., Any]:
    """A fresh copy of ``block_step`` (or, for a ``("count", ...)`` key, of
    :func:`~logratio._near.count_near`): its own code object, hence its own Dynamo cache,
    compiled with inductor and dynamic shapes.  Compilation itself happens at the first call."""
    base = count_near if key[0] == "count" else block_step
    device_type, dtype = key[1], key[2]
    tag = f"{device_type}_{str(dtype).removeprefix('torch.')}_{len(_compiled)}"
    name = f"{base.__name__}_{tag}"
    code = base.__code__.replace(co_name=name, co_qualname=name)
    fn = types.FunctionType(code, base.__globals__, name, base.__defaults__)
    fn.__kwdefaults__ = base.__kwdefaults__
    return torch.compile(fn, dynamic=True, fullgraph=True)


def _warn(kind: str, message: str) -> None:
    """One warning per process: the first failure says why; later ones are silent."""
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"logratio could not compile its kernel ({kind}: {message}); running the eager core "
        f"instead (same results, slower). Set {ENV_VAR}=0 or pass compile=False to skip "
        "the attempt.",
        CompileFallbackWarning,
        stacklevel=4,
    )
