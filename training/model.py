"""The embedding network: ResNet-50 trunk -> global average pool (2048-d) -> Linear -> L2 normalise.

Also: seeded construction, loading backbone weights, and the ``model.pt`` checkpoint format.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

ARCH = "resnet50"
FEATURE_DIM = 2048
CHECKPOINT_FORMAT = "marquee-checkpoint/1"


class EmbeddingNet(nn.Module):
    def __init__(self, embedding_dim: int = 512):
        super().__init__()
        backbone = torchvision.models.resnet50(weights=None)
        backbone.fc = nn.Identity()  # forward() ends with avgpool + flatten -> [N, 2048]
        self.backbone = backbone
        self.head = nn.Linear(FEATURE_DIM, embedding_dim)
        self.embedding_dim = embedding_dim

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.backbone(image))

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features [N, 2048] -> unit embeddings [N, D] (the head-only training path)."""
        return F.normalize(self.head(features), p=2.0, dim=1)


def build_model(embedding_dim: int = 512, seed: int = 0) -> EmbeddingNet:
    """A randomly initialised model; the same seed gives the same parameters."""
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EmbeddingNet(embedding_dim)
    return model


def load_backbone_weights(model: EmbeddingNet, path: str | os.PathLike) -> None:
    """Load a torchvision ResNet-50 state dict (the classifier ``fc.*`` is dropped) into the backbone.

    The file must already have been checksum-verified (see training.weights.resolve_weights).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report any unpickling/format error the same way
        raise ValueError(f"{path}: not a loadable PyTorch state dict ({e})") from e
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    try:
        missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        first = str(e).strip().splitlines()[1:2] or [str(e)]
        raise ValueError(f"{path}: does not match torchvision resnet50: {first[0].strip()}") from None
    if missing or unexpected:
        raise ValueError(
            f"{path}: does not match torchvision resnet50: "
            f"missing {sorted(missing)[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {sorted(unexpected)[:5]}{'...' if len(unexpected) > 5 else ''}"
        )


def save_checkpoint(model: EmbeddingNet, config: Mapping[str, Any], path: str | os.PathLike) -> None:
    """``config`` must hold everything needed to rebuild: arch, embedding_dim, preprocessing, ..."""
    torch.save(
        {"format": CHECKPOINT_FORMAT, "config": dict(config), "state_dict": model.state_dict()},
        path,
    )


def load_checkpoint(path: str | os.PathLike) -> tuple[EmbeddingNet, dict[str, Any]]:
    """Rebuild the model from ``model.pt``; returns (model in eval mode, config)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    config = ckpt["config"]
    if config.get("arch") != ARCH:
        raise ValueError(f"{path}: unsupported arch {config.get('arch')!r}")
    model = EmbeddingNet(int(config["embedding_dim"]))
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model.eval()
    return model, config
