"""logratio: the log-ratio loss and dense triplet mining for continuous labels.

Kim, Seo, Laptev, Cho, Kwak, *Deep Metric Learning Beyond Binary Supervision*, CVPR 2019.
"""

from typing import Any

from . import metrics
from .distances import pairwise_distances
from .knn import knn_method, knn_table
from .label_metrics import PeriodicMetric, periodic
from .loss import (
    log_ratio_loss,
    log_ratio_loss_and_grad,
    reference_log_ratio_loss,
    reference_log_ratio_loss_and_grad,
)
from .mining import dense_triplets
from .options import LossOptions
from .rank_n_contrast import rank_n_contrast_loss, rank_n_contrast_loss_and_grad
from .sampler import DenseBatchSampler
from .triplets import triplet_log_ratio_loss
from .y_aware import y_aware_infonce_loss, y_aware_infonce_loss_and_grad

__all__ = [
    "DenseBatchSampler",
    "LogRatioLoss",
    "LossOptions",
    "PeriodicMetric",
    "RankNContrastLoss",
    "YAwareInfoNCELoss",
    "dense_triplets",
    "knn_method",
    "knn_table",
    "log_ratio_loss",
    "log_ratio_loss_and_grad",
    "metrics",
    "pairwise_distances",
    "periodic",
    "rank_n_contrast_loss",
    "rank_n_contrast_loss_and_grad",
    "reference_log_ratio_loss",
    "reference_log_ratio_loss_and_grad",
    "triplet_log_ratio_loss",
    "y_aware_infonce_loss",
    "y_aware_infonce_loss_and_grad",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """The ``torch.nn.Module`` losses (``LogRatioLoss``, ``RankNContrastLoss``,
    ``YAwareInfoNCELoss``) and
    ``logratio.distributed`` (the global-batch loss of data-parallel PyTorch): they import
    PyTorch, so only when asked for."""
    if name in ("LogRatioLoss", "RankNContrastLoss", "YAwareInfoNCELoss"):
        from . import nn

        return getattr(nn, name)
    if name == "distributed":
        import importlib

        return importlib.import_module(f"{__name__}.distributed")
    raise AttributeError(f"module 'logratio' has no attribute {name!r}")
