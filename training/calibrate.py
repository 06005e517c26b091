"""BatchNorm statistics calibration for a randomly initialised network.

A random ResNet's BatchNorm layers start with running mean 0 / variance 1, which makes
eval-mode activations explode or vanish. Calibration re-estimates the statistics as a
cumulative average (momentum=None) over forward passes on real posters, without gradients.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from .preprocess import load_image

ProgressFn = Callable[[int, int], None]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def calibrate_batchnorm(
    model: nn.Module,
    images: Sequence[str],
    spec: Mapping[str, Any],
    batch_size: int = 32,
    on_progress: ProgressFn | None = None,
    workers: int = 2,
) -> int:
    """Reset and re-estimate every BatchNorm layer's running statistics on ``images``.

    Leaves the model in eval mode; returns the number of images used.
    """
    bns = batchnorm_layers(model)
    if not images or not bns:
        model.eval()
        return 0
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = None  # cumulative moving average over all calibration batches
        bn.reset_running_stats()
    model.train()
    total, done = len(images), 0
    try:
        with torch.no_grad(), ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            tensors = pool.map(lambda p: load_image(p, spec), images)
            batch: list[torch.Tensor] = []
            for t in tensors:
                batch.append(t)
                if len(batch) == batch_size:
                    model(torch.stack(batch))
                    done += len(batch)
                    batch = []
                    if on_progress:
                        on_progress(done, total)
            if batch:
                model(torch.stack(batch))
                done += len(batch)
                if on_progress:
                    on_progress(done, total)
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        model.eval()
    return done
