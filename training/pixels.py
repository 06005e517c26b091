"""Decoded posters held in memory as uint8, and augmentation applied to whole batches of them.

On a CPU the network, not the data, must have both cores: each poster is decoded and resized once
(through the same preprocessing as serving) into one uint8 tensor, and a training batch is a
random crop-and-flip of rows of it, normalised on the fly. Colour is left alone: it is a genre
signal (a colour jitter would teach the network to ignore it).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data import load_pixels
from .manifest import Record, image_source

ProgressFn = Callable[[int, int], None]


def load_uint8(
    records: Sequence[Record], spec: Mapping[str, Any], on_progress: ProgressFn | None = None
) -> torch.Tensor:
    """[N, 3, H, W] uint8 at the spec's size; a server-rendered input of that size is read as it is."""
    w, h = spec["width"], spec["height"]
    out = torch.empty(len(records), 3, h, w, dtype=torch.uint8)
    for i, r in enumerate(records):
        img = load_pixels(image_source(r, w, h), spec)
        out[i] = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        if on_progress and ((i + 1) % 256 == 0 or i + 1 == len(records)):
            on_progress(i + 1, len(records))
    return out


def normalise_batch(x: torch.Tensor, spec: Mapping[str, Any]) -> torch.Tensor:
    """uint8 [N,3,H,W] -> float32 (x/255 - mean) / std."""
    mean = torch.tensor(spec["mean"], dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec["std"], dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


def resize_batch(x: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Float batch resized (antialiased bilinear) to (height, width); unchanged when it already is."""
    if x.shape[-2:] == (height, width):
        return x
    return F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


class BatchAugment:
    """Random resized crop (area ``scale``, aspect within 3/4..4/3 of the poster's) and horizontal flip,
    output at (height, width). Crops are drawn from a seeded generator."""

    def __init__(self, width: int, height: int, scale: tuple[float, float] = (0.35, 1.0), seed: int = 0):
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"crop scale must satisfy 0 < lo <= hi <= 1, got {scale}")
        self.width, self.height, self.scale = width, height, scale
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """float [N,3,H,W] (already normalised) -> float [N,3,height,width]."""
        n, _, H, W = x.shape
        u = torch.rand(n, 4, generator=self.generator).tolist()
        crops = []
        for i in range(n):
            area = (self.scale[0] + (self.scale[1] - self.scale[0]) * u[i][0]) * H * W
            log_r = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[i][1]
            ratio = math.exp(log_r) * (W / H)  # width / height, around the poster's own
            cw = min(W, max(8, round(math.sqrt(area * ratio))))
            ch = min(H, max(8, round(math.sqrt(area / ratio))))
            top = int((H - ch) * u[i][2])
            left = int((W - cw) * u[i][3])
            crop = x[i : i + 1, :, top : top + ch, left : left + cw]
            crops.append(resize_batch(crop, self.width, self.height))
        out = torch.cat(crops)
        flip = (torch.rand(n, generator=self.generator) < 0.5).to(out.device)
        out[flip] = out[flip].flip(-1)
        return out
