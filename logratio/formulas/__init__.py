"""The losses the engine runs, one formula each (:mod:`logratio.formula`).

* :class:`~logratio.formulas.log_ratio.LogRatio`: the dense log-ratio loss of Kim et al.,
  CVPR 2019 (docs/design.md §1);
* :class:`~logratio.formulas.rank_n_contrast.RankNContrast`: Rank-N-Contrast of Zha et al.,
  NeurIPS 2023 (docs/design.md §9);
* :class:`~logratio.formulas.y_aware.YAwareInfoNCE`: y-aware InfoNCE of Dufumier et al.,
  MICCAI 2021 (docs/design.md §8).
"""

from .log_ratio import LogRatio
from .rank_n_contrast import RankNContrast
from .y_aware import YAwareInfoNCE

__all__ = ["LogRatio", "RankNContrast", "YAwareInfoNCE"]
