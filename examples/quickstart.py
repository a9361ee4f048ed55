"""Quick start: the dense log-ratio loss and its closed-form gradient on NumPy arrays."""

import numpy as np

import logratio

rng = np.random.default_rng(0)
embeddings = rng.normal(size=(64, 16)).astype(np.float32)
ages = rng.uniform(0, 80, size=64)  # a continuous label

loss, grad = logratio.log_ratio_loss_and_grad(embeddings, ages)
print(f"dense loss over every triplet: {float(loss):.4f}; gradient {grad.shape} {grad.dtype}")

# The authors' released mini-batch loss, exactly: one anchor (row 0), sqrt(‖f_0 − f_i‖² + 1e-4/d).
d = embeddings.shape[1]
authors = logratio.log_ratio_loss(embeddings, ages, anchors=0, squared=False, root_eps=1e-4 / d)
print("one-anchor loss (authors' code):", float(authors))

# Queries against a reference set (a memory bank of other samples).
bank = logratio.reference_log_ratio_loss(embeddings[:16], embeddings[16:], ages[:16], ages[16:])
print("queries against a memory bank:", float(bank))

# A few steps of plain gradient descent on the embeddings themselves.
for step in range(201):
    loss, grad = logratio.log_ratio_loss_and_grad(embeddings, ages)
    embeddings -= 5.0 * grad
    if step % 50 == 0:
        print(f"step {step:3d}  loss {float(loss):.5f}")
