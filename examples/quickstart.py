"""Quick start: the dense log-ratio loss and its closed-form gradient on NumPy arrays."""

import numpy as np

import logratio

rng = np.random.default_rng(0)
embeddings = rng.normal(size=(64, 16)).astype(np.float32)
ages = rng.uniform(0, 80, size=64)  # a continuous label

loss, grad = logratio.log_ratio_loss_and_grad(embeddings, ages)
print(f"dense loss over every triplet: {float(loss):.4f}; gradient {grad.shape} {grad.dtype}")

# The paper's mini-batch: one anchor (row 0), Euclidean distances as in the authors' code.
print(
    "one-anchor loss:", float(logratio.log_ratio_loss(embeddings, ages, anchors=0, squared=False))
)

# A few steps of plain gradient descent on the embeddings themselves.
for step in range(201):
    loss, grad = logratio.log_ratio_loss_and_grad(embeddings, ages)
    embeddings -= 5.0 * grad
    if step % 50 == 0:
        print(f"step {step:3d}  loss {float(loss):.5f}")
