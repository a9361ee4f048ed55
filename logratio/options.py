"""The options of a call, in three parts, and :class:`LossOptions`, the log-ratio loss's.

A call of the engine is described by one hashable :class:`Spec`:

* the **formula** (:mod:`logratio.formula`): the loss and its own validated options;
* the **reduction**: ``"mean"``, ``"sum"`` or ``"none"``;
* the **run settings** (:class:`RunSettings`): how it runs, never what it computes.

The spec is JAX's static argument and what the PyTorch custom op's schema carries.  Arrays
(labels, label distances, anchors, masks) and the reference set's size are not options: they
belong to the problem (:mod:`logratio._problem`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from . import _validation as v
from .formulas.log_ratio import LabelMetric, LogRatio, Ties

__all__ = ["LossOptions", "Reduction", "RunSettings", "Spec"]

Reduction = Literal["mean", "sum", "none"]


@dataclass(frozen=True)
class RunSettings:
    """How a call runs; results do not depend on them.

    Attributes:
      block_size: anchors per block (memory O(block_size · B)); ``None`` chooses by size.
      compile: PyTorch only: the block kernel compiled with inductor
        (:mod:`logratio.backends._torch_engine`).  ``None``: on, unless the environment
        variable ``LOGRATIO_COMPILE=0``; ``False``: the eager core.
    """

    block_size: int | None = None
    compile: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_size", v.optional_block_size(self.block_size))
        if self.compile is not None and not isinstance(self.compile, bool):
            raise TypeError(f"compile must be None or a bool; got {self.compile!r}")


class Spec(NamedTuple):
    """What the engine computes and how: a formula, a reduction, run settings."""

    formula: Any  # a logratio.formula.Formula
    reduction: Reduction = "mean"
    run: RunSettings = RunSettings()

    @classmethod
    def of(cls, formula: Any, reduction: str = "mean", **run: Any) -> Spec:
        """A checked spec: ``run`` holds the :class:`RunSettings` keywords."""
        from .formula import Formula, is_registered

        if not isinstance(formula, Formula) or not is_registered(formula):
            raise TypeError(
                "formula must be a logratio.formula.Formula (a frozen dataclass with name, "
                "pairs, values, canonical, terms and in_place, registered with "
                f"logratio.formula.register); got {formula!r}"
            )
        v.choice("reduction", reduction, v.REDUCTIONS)
        return cls(formula, reduction, RunSettings(**run))  # type: ignore[arg-type]


@dataclass(frozen=True)
class LossOptions:
    """Options of :func:`logratio.log_ratio_loss` (docs/design.md §1), validated on creation.

    Attributes:
      squared, label_metric, eps, root_eps, ties: the log-ratio formula's options
        (:class:`~logratio.formulas.log_ratio.LogRatio`, :attr:`formula`).
      reduction: ``"mean"`` over counted triplets, ``"sum"``, or ``"none"`` (per-anchor sums).
      block_size, compile: the run settings (:class:`RunSettings`, :attr:`run`).

    Equal options compare and hash equal, so a compiled function is reused across calls.
    """

    squared: bool = True
    label_metric: LabelMetric | Callable[..., Any] = "euclidean"
    eps: float = 1e-6
    root_eps: float = 0.0
    ties: Ties = "include"
    reduction: Reduction = "mean"
    block_size: int | None = None
    compile: bool | None = None

    def __post_init__(self) -> None:
        formula = LogRatio(self.squared, self.label_metric, self.eps, self.root_eps, self.ties)
        for name in ("label_metric", "eps", "root_eps"):  # normalised (eps=1 becomes 1.0)
            object.__setattr__(self, name, getattr(formula, name))
        v.choice("reduction", self.reduction, v.REDUCTIONS)
        run = RunSettings(self.block_size, self.compile)
        object.__setattr__(self, "block_size", run.block_size)

    @property
    def formula(self) -> LogRatio:
        """The log-ratio formula of these options."""
        return LogRatio(self.squared, self.label_metric, self.eps, self.root_eps, self.ties)

    @property
    def run(self) -> RunSettings:
        return RunSettings(self.block_size, self.compile)

    def spec(self) -> Spec:
        """The engine's :class:`Spec` of these options."""
        return Spec(self.formula, self.reduction, self.run)

    @classmethod
    def from_kwargs(cls, options: dict[str, Any], where: str = "the loss") -> LossOptions:
        """``LossOptions(**options)`` with a clear error for an unknown keyword (``where``:
        the function or class the user called)."""
        unknown = set(options) - _FIELDS
        if unknown:
            raise TypeError(
                f"{where} got unexpected keyword argument(s): {', '.join(sorted(unknown))}; "
                f"its options are {', '.join(sorted(_FIELDS))}"
            )
        return cls(**options)

    def user_options(self) -> dict[str, Any]:
        """The options as the keywords a user passes."""
        return dataclasses.asdict(self)

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
