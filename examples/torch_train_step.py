"""A PyTorch training step with the log-ratio loss: the closed-form gradient is autograd's.

A small MLP embeds points whose continuous label is their distance along a curve; the loss
asks embedding distance ratios to follow label distance ratios (Kim et al., CVPR 2019).
"""

import torch

from logratio import LogRatioLoss

torch.manual_seed(0)
t = torch.rand(512) * 6.0  # continuous labels
points = torch.stack([torch.cos(t), torch.sin(t), 0.1 * t], dim=1) + 0.01 * torch.randn(512, 3)

model = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
loss_fn = LogRatioLoss()  # dense: every batch member is an anchor, every triplet counts
opt = torch.optim.Adam(model.parameters(), lr=1e-2)

for step in range(201):
    idx = torch.randint(0, 512, (64,))
    loss = loss_fn(model(points[idx]), t[idx])  # or loss_fn(emb, label_distances=D)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 50 == 0:
        print(f"step {step:3d}  loss {loss.item():.4f}")
