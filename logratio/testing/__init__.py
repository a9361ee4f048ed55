"""Tools for checking an implementation of the log-ratio loss against this one.

For people porting or re-implementing the loss of Kim et al., *Deep Metric Learning Beyond
Binary Supervision* (CVPR 2019, Eq. 4; docs/design.md §1):

    l(a, i, j) = ( log (D_ai+ε)/(D_aj+ε) − log (Δ_ai+ε)/(Δ_aj+ε) )²

over every anchor ``a`` and unordered pair of neighbours ``{i, j}`` (tied pairs once or not
at all), averaged over the counted triplets.

* :func:`reference_loss`, :func:`reference_loss_and_grad` (:mod:`.reference`): the
  specification, a float64 enumeration of every triplet with Python loops that shares no code
  with the dense O(B²) implementation; :func:`reference_triplets`,
  :func:`reference_label_distances` and :func:`reference_anchors` spell out the parts.
* :func:`assert_matches_reference` (:mod:`.matching`): runs your
  ``fn(embeddings, labels, **options)`` (and optionally its gradient) on Hypothesis-drawn
  problems and raises an AssertionError with the smallest failing example; ``logratio check
  --against MODULE:FUNCTION`` does the same from the command line.
* :func:`reference_rank_n_contrast_loss_and_grad`,
  :func:`reference_y_aware_infonce_loss_and_grad` (:mod:`.contrastive`): the same kind of loop
  references for the other two losses of the library.
* :mod:`.strategies`: the Hypothesis strategies for problems (embeddings with duplicate rows,
  labels with ties, masks, anchors) and :class:`~.strategies.LossCase`.
* :mod:`.backends`: how to reach each array library (conversion, devices, synchronisation,
  autodiff), shared by ``logratio check``, the test suite and the benchmarks.

``import logratio.testing`` imports neither Hypothesis nor any array framework:
:func:`assert_matches_reference` and :mod:`.strategies` import Hypothesis when first used.
"""

from typing import Any

from . import backends
from .contrastive import (
    reference_rank_n_contrast_loss_and_grad,
    reference_y_aware_infonce_loss_and_grad,
)
from .reference import (
    reference_anchors,
    reference_label_distances,
    reference_loss,
    reference_loss_and_grad,
    reference_triplets,
)

__all__ = [
    "assert_matches_reference",
    "backends",
    "reference_anchors",
    "reference_label_distances",
    "reference_loss",
    "reference_loss_and_grad",
    "reference_rank_n_contrast_loss_and_grad",
    "reference_triplets",
    "reference_y_aware_infonce_loss_and_grad",
    "strategies",
]


def __getattr__(name: str) -> Any:
    """``assert_matches_reference`` and ``strategies``, which import Hypothesis, on first use."""
    if name == "assert_matches_reference":
        from .matching import assert_matches_reference

        return assert_matches_reference
    if name in ("strategies", "matching"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
