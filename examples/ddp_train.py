"""Data-parallel training with the log-ratio loss of the global batch (PyTorch DDP, CPU).

    torchrun --nproc_per_node 2 examples/ddp_train.py

Each process embeds its shard of every batch; ``LogRatioLoss(distributed=True)`` gathers the
shards, so every anchor is compared with the whole global batch and the loss printed on rank 0
is the loss of the global batch.  Its backward is scaled by the world size, so after DDP
averages the gradients they are those of one process training on the whole batch: nothing to
multiply by hand.  Shards may have different sizes (here the batch of 100 is split unevenly).
"""

import datetime
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from logratio import LogRatioLoss

os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
rank, world = dist.get_rank(), dist.get_world_size()
torch.set_num_threads(1)

# the same data and initial model on every rank (DDP also broadcasts rank 0's parameters)
torch.manual_seed(0)
t = torch.rand(512) * 6.0  # continuous labels: position along a helix
points = torch.stack([torch.cos(t), torch.sin(t), 0.1 * t], dim=1) + 0.01 * torch.randn(512, 3)
model = DDP(torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)))
loss_fn = LogRatioLoss(distributed=True)  # gradient="ddp-mean": DDP's average is undone
opt = torch.optim.Adam(model.parameters(), lr=1e-2)

batch = 100
bounds = torch.linspace(0, batch, world + 1).round().long().tolist()
bounds[1:-1] = [b + 3 for b in bounds[1:-1]]  # uneven shards, on purpose
for step in range(31):
    idx = torch.randint(0, 512, (batch,), generator=torch.Generator().manual_seed(step))
    mine = idx[bounds[rank] : bounds[rank + 1]]  # this rank's shard of the global batch
    loss = loss_fn(model(points[mine]), t[mine])  # the global batch's loss, on every rank
    opt.zero_grad()
    loss.backward()
    opt.step()
    if rank == 0 and step % 10 == 0:
        print(f"step {step:2d}  global-batch loss {loss.item():.4f}  (shards {world})")

dist.barrier()  # no rank leaves while another still talks to it
dist.destroy_process_group()
