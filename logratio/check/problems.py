"""The check's problems: small random inputs covering the loss's options, with their answers.

Every problem has B = 8 rows of d = 3 embeddings and one option set (every row an anchor, the
paper's single anchor, an anchor subset, ties included and excluded, squared and plain
Euclidean distances, a pair mask, given label distances).  Its loss and gradient come from the
float64 loop reference, :mod:`logratio._reference`, which enumerates every triplet
(docs/design.md §1) and shares no code with the dense O(B²) identity under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _reference as ref

__all__ = [
    "CheckProblem",
    "label_distance_matrix",
    "make_problems",
    "reference_options",
    "with_reference",
]


@dataclass(frozen=True)
class CheckProblem:
    """One small random problem and its float64 reference answer."""

    name: str
    embeddings: np.ndarray
    labels: np.ndarray | None
    label_distances: np.ndarray | None
    options: dict[str, Any]
    loss: float
    grad: np.ndarray


def make_problems(seed: int = 0) -> list[CheckProblem]:
    """A handful of problems (B = 8, d = 3) covering the loss's options, with reference answers."""
    rng = np.random.default_rng(seed)
    # one shape for every problem: eager JAX compiles each operation once per shape
    b, d = 8, 3
    specs: list[tuple[str, dict[str, Any]]] = [
        ("all anchors, vector labels", {}),
        ("anchor 0, Euclidean", {"anchors": 0, "squared": False}),
        ("anchor subset, ties excluded", {"anchors": [0, 2, 5], "ties": "exclude"}),
        ("ties included, cityblock, sum", {"label_metric": "cityblock", "reduction": "sum"}),
        ("label distances, mask", {"mask": True}),
    ]
    out = []
    for name, opts in specs:
        f = rng.normal(size=(b, d))
        labels = dl = None
        options = dict(opts)
        if "ties" in name:  # integer labels: many equal label distances
            labels = rng.integers(0, 4, size=(b, 2)).astype(np.float64)
        elif "label distances" in name:
            half = rng.integers(1, 4, size=(b, b)).astype(np.float64)
            dl = np.triu(half, 1) + np.triu(half, 1).T
        elif "anchor 0" in name:
            labels = rng.uniform(0, 5, size=b)
        else:
            labels = rng.normal(size=(b, 2))
        if options.pop("mask", False):
            options["mask"] = rng.random((b, b)) < 0.8
        out.append(with_reference(name, f, labels, dl, options))
    return out


def reference_options(options: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`logratio._reference.loss_and_grad` for ``options``."""
    anchors = options.get("anchors")
    return {
        "anchors": [anchors] if isinstance(anchors, int) else anchors,
        "mask": options.get("mask"),
        "squared": options.get("squared", True),
        "ties": options.get("ties", "include"),
        "reduction": options.get("reduction", "mean"),
    }


def label_distance_matrix(
    labels: np.ndarray | None, label_distances: np.ndarray | None, options: dict[str, Any]
) -> np.ndarray:
    """The (B, B) label distances: given, or computed from the labels by the reference."""
    if labels is None:
        return label_distances
    return ref.label_distances(labels, options.get("label_metric", "euclidean"))


def with_reference(
    name: str,
    embeddings: np.ndarray,
    labels: np.ndarray | None,
    label_distances: np.ndarray | None,
    options: dict[str, Any],
) -> CheckProblem:
    """A problem with its loss and gradient computed by the float64 loop reference."""
    dist = label_distance_matrix(labels, label_distances, options)
    loss, grad = ref.loss_and_grad(embeddings, dist, **reference_options(options))
    return CheckProblem(name, embeddings, labels, label_distances, options, loss, grad)
