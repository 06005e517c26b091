"""Pooled backbone features for ``head`` mode, computed once and cached on disk.

The cache is keyed by the backbone's checksum (its parameters and BatchNorm statistics) and the
preprocessing spec (input size included): a different initial model or input size never reuses
features. Entries are keyed by image file (path, size, mtime), so a grown catalog only computes
the new posters. Features are computed in eval mode on the unaugmented inputs, in float32.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from .data import PosterDataset, quiet_worker

ProgressFn = Callable[[int, int, float], None]  # done, total, images per second


def module_sha256(module: nn.Module) -> str:
    """SHA-256 over a module's state dict (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get("MARQUEE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "marquee"
    )
    return Path(base) / "features"


def cache_file(cache_dir: str | os.PathLike, backbone_sha256: str, spec: Mapping[str, Any]) -> Path:
    spec_digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{backbone_sha256[:24]}-{spec['width']}x{spec['height']}-{spec_digest}.pt"


def _entry_key(path: str) -> str:
    st = os.stat(path)
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


def cached_features(
    backbone: nn.Module,
    dataset: PosterDataset,
    cache_dir: str | os.PathLike,
    *,
    batch_size: int = 64,
    workers: int = 0,
    device: torch.device | str = "cpu",
    on_progress: ProgressFn | None = None,
    write: bool = True,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Features [len(dataset), 2048] in dataset order, and {"file", "hits", "computed", "backbone_sha256"}."""
    sha = module_sha256(backbone)
    path = cache_file(cache_dir, sha, dataset.spec)
    stored: dict[str, torch.Tensor] = {}
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            stored = dict(zip(blob["keys"], blob["features"]))
        except Exception:  # noqa: BLE001 - a corrupt cache file is recomputed, never trusted
            stored = {}
    keys = [_entry_key(dataset.source(i)) for i in range(len(dataset))]
    missing = [i for i, k in enumerate(keys) if k not in stored]
    if missing:
        computed = _compute(backbone, Subset(dataset, missing), batch_size, workers, device, on_progress)
        for i, f in zip(missing, computed):
            stored[keys[i]] = f
        if write:
            _save(path, stored)
    elif on_progress:
        on_progress(len(dataset), len(dataset), 0.0)
    features = torch.stack([stored[k] for k in keys]) if keys else torch.zeros(0, 0)
    info = {"file": str(path), "hits": len(keys) - len(missing), "computed": len(missing), "backbone_sha256": sha}
    return features, info


@torch.no_grad()
def _compute(backbone, subset, batch_size, workers, device, on_progress) -> torch.Tensor:
    device = torch.device(device)
    was_training = backbone.training
    backbone.eval().to(device)
    if device.type == "cuda":
        backbone.to(memory_format=torch.channels_last)
    pin = device.type == "cuda"
    loader = DataLoader(subset, batch_size=batch_size, num_workers=workers, pin_memory=pin, worker_init_fn=quiet_worker)
    out: list[torch.Tensor] = []
    done, total, t0 = 0, len(subset), time.monotonic()
    try:
        for images, _, _ in loader:
            images = images.to(device, non_blocking=True)
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            out.append(backbone(images).float().cpu())
            done += len(images)
            if on_progress:
                on_progress(done, total, done / max(time.monotonic() - t0, 1e-9))
    finally:
        backbone.to("cpu", memory_format=torch.contiguous_format).train(was_training)
    return torch.cat(out)


def _save(path: Path, stored: Mapping[str, torch.Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"keys": list(stored), "features": torch.stack(list(stored.values()))}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
