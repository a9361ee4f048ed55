"""The CuPy adapter: loss and closed-form gradient as CuPy arrays on the input's device.

Skipped without CuPy or without a CUDA device (no GPU here or in CI); the cross-backend
properties for CuPy run in ``test_backends.py`` under the same conditions.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference

cp = pytest.importorskip("cupy", reason="CuPy is not installed")

import logratio  # noqa: E402


def _device_count() -> int:
    try:
        return cp.cuda.runtime.getDeviceCount()
    except Exception:  # no driver or runtime
        return 0


pytestmark = pytest.mark.skipif(_device_count() == 0, reason="CuPy has no CUDA device")


def problem(batch=7, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, dim)), rng.normal(size=batch)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_loss_and_grad_on_device(dtype):
    """NumPy labels and mask with CuPy embeddings: CuPy outputs, reference values."""
    f, y = problem()
    mask = np.random.default_rng(1).random((7, 7)) < 0.8
    x = cp.asarray(f, dtype=dtype)
    loss, grad = logratio.log_ratio_loss_and_grad(x, y, mask=mask, ties="exclude")
    assert isinstance(loss, cp.ndarray) and isinstance(grad, cp.ndarray)
    assert grad.dtype == dtype and grad.device == x.device
    dl = reference.label_distance_matrix(y)
    want = reference.gradient(f, dl, mask=mask, ties="exclude")
    rtol = 1e-9 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(cp.asnumpy(grad), want, rtol=rtol, atol=rtol * np.abs(want).max())
    want_loss = reference.loss(f, dl, mask=mask, ties="exclude")
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-9 if dtype == np.float64 else 1e-4)
    assert float(logratio.log_ratio_loss(x, y, mask=mask, ties="exclude")) == float(loss)


@pytest.mark.skipif(_device_count() < 2, reason="needs two CUDA devices")
def test_second_device():
    """Embeddings on device 1 while device 0 is current: everything stays on device 1."""
    f, y = problem()
    with cp.cuda.Device(1):
        x = cp.asarray(f)
    loss, grad = logratio.log_ratio_loss_and_grad(x, y, reduction="none")
    assert loss.device.id == 1 and grad.device.id == 1
    np.testing.assert_allclose(
        cp.asnumpy(grad), logratio.log_ratio_loss_and_grad(f, y, reduction="none")[1], rtol=1e-9
    )
