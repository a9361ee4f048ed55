"""The losses the engine runs, one formula each (:mod:`logratio.formula`).

* :class:`~logratio.formulas.log_ratio.LogRatio`: the dense log-ratio loss of Kim et al.,
  CVPR 2019 (docs/design.md §1).
"""

from .log_ratio import LogRatio

__all__ = ["LogRatio"]
