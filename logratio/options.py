"""The options of the dense log-ratio loss: one validated, hashable value.

:class:`LossOptions` is built once where a user calls in (``logratio.log_ratio_loss``,
``LogRatioLoss(...)``) and travels unchanged to the core: it is JAX's static argument, it
unpacks into the PyTorch custom op's schema (:meth:`LossOptions.schema`), and it is what the
``torch.nn.Module`` stores.  Arrays (labels, label distances, anchors, masks) are not options:
they are checked where their values are visible (:mod:`logratio._problem`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from . import _validation as v

__all__ = ["LossOptions"]

Reduction = Literal["mean", "sum", "none"]
Ties = Literal["include", "exclude"]
LabelMetric = Literal["euclidean", "sqeuclidean", "cityblock"]


@dataclass(frozen=True)
class LossOptions:
    """Options of :func:`logratio.log_ratio_loss` (docs/design.md §1), validated on creation.

    Attributes:
      squared: squared Euclidean embedding distances ``‖f_a − f_b‖²`` (the paper, Eq. 4) or
        plain Euclidean ``‖f_a − f_b‖`` (the authors' released code).
      label_metric: ``"euclidean"``, ``"sqeuclidean"``, ``"cityblock"`` or a callable
        ``metric(labels_a, labels_b) -> (len(labels_a), len(labels_b))`` that receives arrays
        of the embeddings' kind.
      eps: ε, added to both distances before the log.
      root_eps: with ``squared=False``, the embedding distance is
        ``sqrt(‖f_a − f_b‖² + root_eps)`` for a ≠ b, as in the released implementations
        (docs/design.md §6.1): the authors' code uses ``1e-4 / d``, HEBO's ``1e-4 / B``.  A
        copy of the anchor then has distance ``sqrt(root_eps)``.  Must be 0 when ``squared``.
      ties: ``"include"`` counts neighbour pairs of equal label distance once (the authors'
        code); ``"exclude"`` drops them (the paper's strict ``Δ_ai < Δ_aj``).
      reduction: ``"mean"`` over counted triplets, ``"sum"``, or ``"none"`` (per-anchor sums).
      block_size: anchors per block (memory O(block_size · B)); ``None`` chooses by size.
      num_queries: ``None`` for the dense loss of a batch (every row a possible anchor and
        neighbour of the others); an int Q when the first Q rows are queries (the anchors)
        and the others a reference set (the neighbours): the loss of
        :func:`logratio.reference_log_ratio_loss`.
      compile: PyTorch only: run the core's block kernel compiled with inductor
        (:mod:`logratio.backends._torch_engine`).  ``None``: on, unless the environment
        variable ``LOGRATIO_COMPILE=0``; ``False``: the eager core.  Results are the same.

    Equal options compare and hash equal, so a compiled function is reused across calls.
    """

    squared: bool = True
    label_metric: LabelMetric | Callable[..., Any] = "euclidean"
    eps: float = 1e-6
    root_eps: float = 0.0
    ties: Ties = "include"
    reduction: Reduction = "mean"
    block_size: int | None = None
    num_queries: int | None = None
    compile: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.squared, bool):
            raise TypeError(f"squared must be a bool; got {self.squared!r}")
        _set(self, "label_metric", v.label_metric(self.label_metric))
        _set(self, "eps", v.positive_float("eps", self.eps))
        _set(self, "root_eps", v.non_negative_float("root_eps", self.root_eps))
        if self.squared and self.root_eps != 0:
            raise ValueError(
                "root_eps applies to plain Euclidean distances: pass squared=False with "
                f"root_eps={self.root_eps!r} (squared distances have no square root)"
            )
        v.choice("ties", self.ties, v.TIES)
        v.choice("reduction", self.reduction, v.REDUCTIONS)
        _set(self, "block_size", v.optional_block_size(self.block_size))
        if self.compile is not None and not isinstance(self.compile, bool):
            raise TypeError(f"compile must be None or a bool; got {self.compile!r}")
        if self.num_queries is not None:
            q = self.num_queries
            if isinstance(q, bool) or not isinstance(q, int) or q < 0:
                raise ValueError(f"num_queries must be None or a non-negative int; got {q!r}")

    @classmethod
    def from_kwargs(cls, options: dict[str, Any], where: str = "the loss") -> LossOptions:
        """``LossOptions(**options)`` with a clear error for an unknown keyword (``where``:
        the function or class the user called).  ``num_queries`` is not a user's option: it
        is set by :func:`logratio.reference_log_ratio_loss`."""
        unknown = set(options) - _USER_FIELDS
        if unknown:
            raise TypeError(
                f"{where} got unexpected keyword argument(s): {', '.join(sorted(unknown))}; "
                f"its options are {', '.join(sorted(_USER_FIELDS))}"
            )
        return cls(**options)

    def user_options(self) -> dict[str, Any]:
        """The options a user passes as keywords (all but ``num_queries``)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k in _USER_FIELDS}

    def replace(self, **changes: Any) -> LossOptions:
        """A copy with some options changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def schema(self) -> tuple[Any, ...]:
        """The options as plain values in field order (a callable metric cannot be one)."""
        return dataclasses.astuple(self)

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def from_schema(*values: Any) -> LossOptions:
        """The inverse of :meth:`schema`; cached, so a repeated option set is checked once."""
        return LossOptions(*values)


_FIELDS = frozenset(f.name for f in dataclasses.fields(LossOptions))
_USER_FIELDS = _FIELDS - {"num_queries"}


def _set(obj: LossOptions, name: str, value: Any) -> None:
    """Store a normalised value on the frozen instance (e.g. ``eps=1`` becomes ``1.0``)."""
    object.__setattr__(obj, name, value)
