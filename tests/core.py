"""The core's internals as the tests reach them: a problem from keyword options, the
per-anchor terms and tangents (:mod:`logratio._dense`)."""

from __future__ import annotations

from typing import Any

from logratio import _dense, _problem
from logratio.options import LossOptions

anchor_terms = _dense.anchor_terms
anchor_tangents = _dense.anchor_tangents


def prepare(
    embeddings: Any,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    **options: Any,
) -> _problem.Problem:
    """The :class:`~logratio._problem.Problem` of a call with keyword options."""
    arrays = _problem.Arrays(embeddings, labels, label_distances, anchors, mask)
    return _problem.prepare(arrays, LossOptions(**options).spec())
