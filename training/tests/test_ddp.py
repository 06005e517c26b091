"""Data-parallel training: two processes on loopback with gloo, as several GPUs or machines run it.

The loss of a step is the global batch's (training.losses.global_batch_loss): after each step the
parameters, the proxies among them, are identical on both ranks and equal to a single process's
trained on the same global batch; and the Lightning path (`train --devices 2` on a CPU) runs end to end.
"""

import json
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from training.losses import MultiLabelProxyAnchorLoss, global_batch_loss

from .conftest import SMALL_H, SMALL_W, run_cli

STEPS = 4
TOLERANCE = 1e-5  # float32, the same sums in another order


class Model(nn.Module):
    """A network and its loss's proxies, as the LightningModule holds them (DDP wraps both)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 8))
        self.loss_fn = MultiLabelProxyAnchorLoss(5, 8)


def global_batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 20, generator=g)
    targets = (torch.rand(8, 5, generator=g) < 0.4).float()
    targets[torch.arange(8), torch.arange(8) % 5] = 1  # every poster has a genre
    return x, targets


def train(model: nn.Module, step_loss, params) -> list[tuple[float, torch.Tensor]]:
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    out = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = step_loss()
        loss.backward()
        optimizer.step()
        out.append((loss.item(), torch.cat([p.detach().flatten() for p in model.parameters()]).clone()))
    return out


class _Forward(nn.Module):
    """DDP needs its wrapped module's forward to produce the loss, so that every parameter's gradient is all-reduced."""

    def __init__(self, model: Model, gather):
        super().__init__()
        self.model = model
        self.gather = gather

    def forward(self, x, targets):
        return global_batch_loss(self.model.loss_fn, self.model.net(x), targets, self.gather)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    model = Model()

    def gather(t):
        return torch.stack(torch.distributed.nn.functional.all_gather(t))

    ddp = DistributedDataParallel(_Forward(model, gather))
    x, targets = global_batch()
    shard = slice(rank * 4, rank * 4 + 4)
    torch.save(train(model, lambda: ddp(x[shard], targets[shard]), model.parameters()), f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_ranks_step_as_one_process_on_the_global_batch(tmp_path):
    mp.spawn(_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    model = Model()
    x, targets = global_batch()
    single = train(model, lambda: model.loss_fn(model.net(x), targets), model.parameters())
    start = torch.cat([p.detach().flatten() for p in Model().parameters()])
    for step in range(STEPS):
        (loss0, params0), (loss1, params1) = ranks[0][step], ranks[1][step]
        assert torch.equal(params0, params1), f"step {step + 1}: the ranks' parameters differ"
        assert abs(loss0 - single[step][0]) < TOLERANCE and abs(loss1 - single[step][0]) < TOLERANCE
        assert (params0 - single[step][1]).abs().max() < TOLERANCE, f"step {step + 1}: not the single process's step"
    assert not torch.equal(ranks[0][-1][1], start), "the parameters moved"
    n_proxies = Model().loss_fn.proxies.numel()
    assert not torch.equal(ranks[0][-1][1][-n_proxies:], start[-n_proxies:]), "the proxies were trained too"


def test_train_runs_lightning_ddp_on_two_cpu_processes(tmp_path, train_manifest):
    out = tmp_path / "ddp"
    proc = run_cli("train", "--manifest", str(train_manifest), "--out", str(out), "--recipe", "paper", "--mode", "full",
                   "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "8", "--limit-batches", "2", "--width", str(SMALL_W),
                   "--height", str(SMALL_H), "--embedding-dim", "16", "--calibrate", "8", "--workers", "0", "--device", "cpu",
                   "--devices", "2", "--progress-interval", "0")  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["event"] == "done", "rank 0 speaks for the run (one JSON voice)"
    assert sum(e["event"] == "start" for e in events) == 1
    assert (out / "model.onnx").exists() and "genre_head" in json.loads((out / "model.json").read_text())
