"""Training-step throughput of torchvision ResNets on this CPU: float32 vs bf16 autocast, NCHW vs channels_last.

    .venv/bin/python bench/training_probe.py > bench/results/training-probe.txt

One AdamW step on a random batch of 32 (ResNet -> Linear(512)), 4 timed steps after one warm-up step,
torch.set_num_threads(2). What decided the CPU recipe's precision, memory format and input size.
"""

import time

import torch
import torchvision

torch.set_num_threads(2)


def bench(arch, w, h, bf16, cl, steps=4, bs=32):
    m = getattr(torchvision.models, arch)(weights=None)
    m.fc = torch.nn.Linear(m.fc.in_features, 512)
    m.train()
    if cl:
        m = m.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), 1e-4)
    x = torch.randn(bs, 3, h, w)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = m(x)
        loss = y.float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    t = time.time()
    for _ in range(steps):
        step()
    dt = (time.time() - t) / steps
    print(f"{arch} {w}x{h} bf16={bf16} channels_last={cl}: {bs / dt:.1f} img/s", flush=True)


for cfg in [
    ("resnet50", 160, 240, False, False), ("resnet50", 160, 240, False, True), ("resnet50", 160, 240, True, True),
    ("resnet50", 96, 144, False, False), ("resnet50", 96, 144, True, True),
    ("resnet18", 160, 240, False, False), ("resnet18", 160, 240, True, True),
    ("resnet18", 96, 144, False, False), ("resnet18", 96, 144, True, True),
]:  # fmt: skip
    bench(*cfg)
