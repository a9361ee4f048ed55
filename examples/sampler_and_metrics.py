"""The paper's mini-batches (DenseBatchSampler) and the retrieval metrics, runnable on the CPU.

A small network learns to embed noisy points on a circle by their angle: each batch is an
anchor, its 5 nearest angles and random others (Kim et al., CVPR 2019, §4); the angle distance
is ``logratio.periodic(360)``, which the sampler, the loss and the metrics all accept.
"""

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import logratio
from logratio import metrics

rng = np.random.default_rng(0)
angles = rng.uniform(0, 360, size=2000)
rad = np.deg2rad(angles)
points = np.stack([np.cos(rad), np.sin(rad)], axis=1) + 0.05 * rng.normal(size=(2000, 2))
images = torch.tensor(np.concatenate([points, rng.normal(size=(2000, 6))], axis=1)).float()
labels = torch.tensor(angles).float()

circle = logratio.periodic(360.0)
sampler = logratio.DenseBatchSampler(angles, batch_size=150, k=5, label_metric=circle, seed=0)
loader = DataLoader(TensorDataset(images, labels), batch_sampler=sampler)
model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
opt = torch.optim.Adam(model.parameters(), lr=3e-3)

for epoch in range(2):
    sampler.set_epoch(epoch)  # optional: each pass already moves on to the next epoch
    for step, (x, y) in enumerate(loader):  # x[0] is the anchor, then its 5 nearest angles
        loss = logratio.log_ratio_loss(model(x), y, label_metric=circle)  # every anchor
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 40:  # a few hundred steps are enough for the example
            break
    print(f"epoch {epoch}: loss {loss.item():.4f}")

with torch.no_grad():
    emb = model(images[:500]).numpy()
scores = metrics.retrieval_metrics(
    emb, emb, angles[:500], angles[:500], label_metric=circle, exclude_self=True,
    ks=(1, 5, 10), ndcg_ks=(10, 100),
)  # fmt: skip
print({name: round(value, 3) for name, value in scores.items()})
