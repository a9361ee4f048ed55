"""Rotated digits: scikit-learn's 8×8 digits, each turned by a random continuous angle.

The label of an image is its rotation angle θ ∈ [0, 2π), and the distance between two labels
is the distance on the circle, ``Δ(a, b) = min(|a − b| mod 2π, 2π − |a − b| mod 2π)``, which
lies in [0, π].  The digits ship with scikit-learn, so nothing is downloaded.

Images are upsampled to 16×16 (bilinear), placed on a 24×24 canvas (so that no corner is cut
off by the rotation: the 16×16 square's half-diagonal is 8√2 ≈ 11.3 < 12) and rotated
counter-clockwise, as displayed with row 0 at the top, by bilinear interpolation
(``scipy.ndimage.rotate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import array_api_compat
import numpy as np

__all__ = [
    "CANVAS_SIDE",
    "DIGIT_SIDE",
    "RotatedDigits",
    "circle_distance",
    "digit_canvas",
    "make_rotated_digits",
    "rotate_images",
]

#: Side of the upsampled digit and of the canvas it is rotated on.
DIGIT_SIDE = 16
CANVAS_SIDE = 24


def circle_distance(a, b):
    """Distances on the circle between angles (radians): ``(len(a), len(b))``.

    ``Δ(a, b) = min(r, 2π − r)`` with ``r = |a − b| mod 2π``; values lie in [0, π].  Accepts
    (n,) or (n, 1) arrays of any Array API namespace (NumPy, PyTorch, JAX), so it can be
    passed as the ``label_metric`` of the loss, the sampler and the metrics.
    """
    xp = array_api_compat.array_namespace(a, b)
    a = _as_column(xp, a, "a")
    b = _as_column(xp, b, "b")
    r = xp.remainder(xp.abs(a[:, None] - b[None, :]), 2 * math.pi)
    return xp.minimum(r, 2 * math.pi - r)


def _as_column(xp, x, name: str):
    if x.ndim == 2 and x.shape[1] == 1:
        return xp.reshape(x, (x.shape[0],))
    if x.ndim != 1:
        raise ValueError(f"{name} must hold angles of shape (n,) or (n, 1); got {tuple(x.shape)}")
    return x


def digit_canvas(images: np.ndarray) -> np.ndarray:
    """Scale 8×8 digits (values 0..16) to [0, 1], upsample to 16×16, centre on a 24×24 canvas."""
    from scipy import ndimage

    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3 or images.shape[1:] != (8, 8):
        raise ValueError(f"images must have shape (n, 8, 8); got {images.shape}")
    up = ndimage.zoom(images / 16.0, (1, DIGIT_SIDE / 8, DIGIT_SIDE / 8), order=1)
    pad = (CANVAS_SIDE - DIGIT_SIDE) // 2
    return np.pad(up, ((0, 0), (pad, pad), (pad, pad)))


def rotate_images(images: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotate each image counter-clockwise (row 0 at the top) by its angle in radians.

    Bilinear interpolation about the image centre, same shape, zeros outside the image.
    """
    from scipy import ndimage

    images = np.asarray(images, dtype=np.float64)
    angles = np.asarray(angles, dtype=np.float64)
    if images.ndim != 3 or angles.shape != (images.shape[0],):
        raise ValueError(
            f"images must be (n, h, w) and angles (n,); got {images.shape} and {angles.shape}"
        )
    out = np.empty_like(images)
    for i, (img, theta) in enumerate(zip(images, angles, strict=True)):
        # ndimage.rotate turns counter-clockwise in the (row, col) plane as displayed
        out[i] = ndimage.rotate(img, math.degrees(theta), reshape=False, order=1, mode="constant")
    return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class RotatedDigits:
    """A train/held-out split of rotated digits.

    ``train_x`` (N, 24, 24) float32 images and ``train_y`` (N,) float64 angles: every
    training digit turned by ``copies`` independent random angles.  ``test_x``/``test_y``:
    the held-out digits, distinct images never seen in training, each turned once; they are
    evaluated leave-one-out (each one a query against all the others).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    train_source: np.ndarray  # index of each image in scikit-learn's digits
    test_source: np.ndarray


def make_rotated_digits(seed: int, *, copies: int = 4, held_out: float = 0.3) -> RotatedDigits:
    """Split scikit-learn's 1797 digits by image and rotate them by random angles.

    ``held_out`` of the images (chosen with ``seed``) are kept for evaluation, each rotated
    once; the others are rotated ``copies`` times each.  Reproducible: the same seed gives
    the same split, angles and images.
    """
    from sklearn.datasets import load_digits

    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"copies must be a positive int; got {copies!r}")
    if not 0 < held_out < 1:
        raise ValueError(f"held_out must lie strictly between 0 and 1; got {held_out!r}")
    digits = load_digits()
    rng = np.random.default_rng(seed)
    canvas = digit_canvas(digits.images)
    order = rng.permutation(canvas.shape[0])
    n_test = round(held_out * canvas.shape[0])
    test_idx, train_idx = order[:n_test], order[n_test:]

    def turned(idx: np.ndarray, reps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = np.repeat(idx, reps)
        angles = rng.uniform(0.0, 2 * math.pi, size=idx.shape[0])
        return rotate_images(canvas[idx], angles).astype(np.float32), angles, idx

    train_x, train_y, train_src = turned(train_idx, copies)
    test_x, test_y, test_src = turned(test_idx, 1)
    return RotatedDigits(train_x, train_y, test_x, test_y, train_src, test_src)
