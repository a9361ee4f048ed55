"""PyTorch training of the demo's network: ``torch.optim.Adam`` on :mod:`.models`' perceptron.

The log-ratio loss goes through :func:`logratio.log_ratio_loss`, whose PyTorch adapter
registers the closed-form gradient (docs/design.md §1.2) with autograd.
"""

from __future__ import annotations

import numpy as np
import torch

from .methods import Batch, Method, method_loss
from .models import Params, torch_mlp

__all__ = ["TorchTrainer", "get_threads", "set_threads"]


class TorchTrainer:
    """One network and its optimiser; ``step`` trains on a batch, ``embed`` evaluates."""

    def __init__(self, params: Params, train_x: np.ndarray, *, lr: float) -> None:
        self.model = torch_mlp(params)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.train_x = torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.float32))

    def step(self, method: Method, batch: Batch) -> float:
        """One Adam step on ``method``'s loss; returns the loss before the step."""
        x = self.train_x[torch.from_numpy(batch.indices)]
        converted = Batch(
            indices=batch.indices,
            angles=torch.from_numpy(batch.angles),
            positives=None if batch.positives is None else torch.from_numpy(batch.positives),
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss = method_loss(method, self.model(x), converted)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Embeddings (n, d) of images ``x`` as float64 NumPy."""
        with torch.no_grad():
            out = self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return out.numpy().astype(np.float64)


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for PyTorch's operations."""
    torch.set_num_threads(threads)


def get_threads() -> int:
    """PyTorch's current number of CPU threads."""
    return torch.get_num_threads()
