"""The check's problems: small random inputs covering the losses' options, with their answers.

Every problem has B = 8 rows of d = 3 embeddings, one loss and one option set.  For the
log-ratio loss: every row an anchor, the paper's single anchor, an anchor subset, ties
included and excluded, squared and plain Euclidean distances, a pair mask, given label
distances; for Rank-N-Contrast and y-aware InfoNCE one problem each (ties, a mask or an
anchor subset).  Their losses and gradients come from float64 loop references
(:mod:`logratio._reference`, :mod:`logratio._reference_contrastive`), which share no code
with the engine under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _reference as ref
from .. import _reference_contrastive as ref_contrastive

__all__ = [
    "LOSSES",
    "CheckProblem",
    "label_distance_matrix",
    "make_problems",
    "reference_answer",
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
    function: str = "log_ratio"  # the loss checked: a key of LOSSES


#: loss name -> the public function's name in ``logratio`` (its ``..._and_grad`` twin too)
LOSSES = {
    "log_ratio": "log_ratio_loss",
    "rank_n_contrast": "rank_n_contrast_loss",
    "y_aware_infonce": "y_aware_infonce_loss",
}


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
    contrastive: list[tuple[str, str, dict[str, Any]]] = [
        ("Rank-N-Contrast, ties, mask, sum", "rank_n_contrast",
         {"mask": True, "reduction": "sum", "temperature": 1.0}),
        ("y-aware InfoNCE, anchor subset", "y_aware_infonce",
         {"anchors": [1, 4, 4], "temperature": 0.5, "sigma": 2.0}),
    ]  # fmt: skip
    for name, function, opts in contrastive:
        f = rng.normal(size=(b, d))
        labels = rng.integers(0, 4, size=b).astype(np.float64)  # ties in every row
        options = dict(opts)
        if options.pop("mask", False):
            options["mask"] = rng.random((b, b)) < 0.8
        out.append(with_reference(name, f, labels, None, options, function))
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


def reference_answer(
    function: str,
    embeddings: np.ndarray,
    labels: np.ndarray | None,
    label_distances: np.ndarray | None,
    options: dict[str, Any],
) -> tuple[Any, np.ndarray]:
    """``(loss, gradient)`` of the float64 loop reference of ``function`` (a key of LOSSES)."""
    if function == "log_ratio":
        dist = label_distance_matrix(labels, label_distances, options)
        return ref.loss_and_grad(embeddings, dist, **reference_options(options))
    loops = getattr(ref_contrastive, function)
    return loops(embeddings, labels, label_distances_=label_distances, **options)


def with_reference(
    name: str,
    embeddings: np.ndarray,
    labels: np.ndarray | None,
    label_distances: np.ndarray | None,
    options: dict[str, Any],
    function: str = "log_ratio",
) -> CheckProblem:
    """A problem with its loss and gradient computed by the float64 loop reference."""
    loss, grad = reference_answer(function, embeddings, labels, label_distances, options)
    return CheckProblem(name, embeddings, labels, label_distances, options, loss, grad, function)
