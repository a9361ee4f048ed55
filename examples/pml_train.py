"""A pytorch-metric-learning style training loop with the log-ratio loss (continuous labels).

A tiny MLP embeds noisy points on a helix whose continuous label is the position along it.
``logratio.pml.LogRatioLoss`` is called like any PML loss: on the batch alone (the dense loss
over every triplet), then against a memory bank of past embeddings (``ref_emb``), and on a
miner's triplets (``indices_tuple``).  Needs ``pip install logratio[pml]``; about 15 seconds of
CPU time.
"""

import torch

import logratio
from logratio.pml import LogRatioLoss

torch.manual_seed(0)
t = torch.rand(1024) * 6.0  # continuous labels
points = torch.stack([torch.cos(t), torch.sin(t), 0.1 * t], dim=1) + 0.01 * torch.randn(1024, 3)

model = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
loss_fn = LogRatioLoss()  # squared distances (the paper), mean over triplets
bank, bank_labels = torch.empty(0, 8), torch.empty(0)  # a memory bank of detached embeddings


def spearman(emb, labels):
    """Rank correlation of embedding and label distances, over all pairs."""
    rank = lambda x: x.argsort().argsort().double()  # noqa: E731
    iu = torch.triu_indices(len(labels), len(labels), 1)
    de = torch.cdist(emb, emb)[iu[0], iu[1]]
    dl = (labels[:, None] - labels[None, :]).abs()[iu[0], iu[1]]
    return torch.corrcoef(torch.stack([rank(de), rank(dl)]))[0, 1].item()


for step in range(181):
    idx = torch.randint(0, 1024, (64,))
    emb, labels = model(points[idx]), t[idx]
    if step < 60:
        loss = loss_fn(emb, labels)  # every triplet of the batch
    elif step < 120:
        loss = loss_fn(emb, labels, ref_emb=bank, ref_labels=bank_labels)  # batch vs. bank
    else:
        # a miner's triplets (a, i, j); here a random subset of the dense triplets
        a, i, j = logratio.dense_triplets((labels[:, None] - labels[None, :]).abs())
        keep = torch.randperm(len(a))[:2048]
        loss = loss_fn(emb, labels, indices_tuple=(a[keep], i[keep], j[keep]))
    opt.zero_grad()
    loss.backward()
    opt.step()
    # enqueue after the loss, so that a batch never meets its own copy in the bank
    bank = torch.cat([bank, emb.detach()])[-512:]
    bank_labels = torch.cat([bank_labels, labels])[-512:]
    if step % 30 == 0:
        with torch.no_grad():
            rho = spearman(model(points[:256]), t[:256])
        print(f"step {step:3d}  loss {loss.item():.4f}  distance rank correlation {rho:.3f}")
