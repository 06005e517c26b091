"""``embed``: the Python serving path — model.pt in PyTorch eager + the shared preprocessing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from .model import load_checkpoint
from .preprocess import load_batch, validate_spec


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """Accept ``DIR/model.pt`` or the model directory itself."""
    p = Path(path)
    return p / "model.pt" if p.is_dir() else p


def embed_raw(checkpoint: str | os.PathLike, raw_file: str | os.PathLike) -> list[list[float]]:
    """Embed an already-preprocessed batch: raw float32 little-endian NCHW (e.g. the server's tensor)."""
    import numpy as np

    model, config = load_checkpoint(resolve_checkpoint(checkpoint))
    spec = validate_spec(config["preprocessing"])
    per_image = 3 * spec["height"] * spec["width"]
    data = np.fromfile(raw_file, dtype="<f4")
    if data.size == 0 or data.size % per_image:
        raise ValueError(
            f"{raw_file}: {data.size} float32 values is not a whole number of [3,{spec['height']},{spec['width']}] images"
        )
    x = torch.from_numpy(data.astype(np.float32).reshape(-1, 3, spec["height"], spec["width"]))
    with torch.no_grad():
        return model(x).tolist()


def embed_images(checkpoint: str | os.PathLike, images: Sequence[str], batch_size: int = 32) -> list[list[float]]:
    model, config = load_checkpoint(resolve_checkpoint(checkpoint))
    spec = validate_spec(config["preprocessing"])
    out: list[list[float]] = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            out.extend(model(load_batch(images[i : i + batch_size], spec)).tolist())
    return out
