"""CuPy: loss and closed-form gradient on the GPU, applied by hand (CuPy has no autograd).

Needs CuPy and a CUDA device.
"""

import cupy as cp
import numpy as np

import logratio

rng = np.random.default_rng(0)
labels = rng.uniform(0, 80, size=256)  # NumPy labels are moved to the GPU
embeddings = cp.asarray(rng.normal(size=(256, 32)), dtype=cp.float32)

for step in range(201):
    loss, grad = logratio.log_ratio_loss_and_grad(embeddings, labels)  # CuPy arrays, same GPU
    embeddings -= 5.0 * grad
    if step % 50 == 0:
        print(f"step {step:3d}  loss {float(loss):.4f}")
