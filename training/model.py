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

ARCH = "resnet50"  # the default backbone (the design, and what ImageNet weights fit)
ARCHS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}  # torchvision ResNets: pooled feature size
CHECKPOINT_FORMAT = "marquee-checkpoint/1"


NECKS = ("none", "bn")


class EmbeddingNet(nn.Module):
    """``neck``: "bn" puts a BatchNorm over the pooled features before the head. Pooled ReLU features all
    lie in the positive orthant, so without it every embedding starts in one narrow cone (cosines of
    0.97 between any two posters) and a network trained from scratch barely leaves it."""

    def __init__(self, embedding_dim: int = 512, arch: str = ARCH, neck: str = "none"):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unsupported arch {arch!r}; expected one of {sorted(ARCHS)}")
        if neck not in NECKS:
            raise ValueError(f"unsupported neck {neck!r}; expected one of {list(NECKS)}")
        backbone = getattr(torchvision.models, arch)(weights=None)
        backbone.fc = nn.Identity()  # forward() ends with avgpool + flatten -> [N, features]
        self.backbone = backbone
        self.neck = nn.BatchNorm1d(ARCHS[arch]) if neck == "bn" else nn.Identity()
        self.head = nn.Linear(ARCHS[arch], embedding_dim)
        self.embedding_dim = embedding_dim
        self.arch = arch
        self.neck_kind = neck
        # The mean embedding of the training gallery, subtracted before the final normalisation. Training
        # leaves it at zero (no effect); export sets it (see training.module.validation_metrics): the raw
        # embeddings of a network trained on a few thousand posters share one dominant direction, which
        # squeezes every cosine into a narrow band; centring spreads them and keeps the ranking.
        self.register_buffer("centre", torch.zeros(embedding_dim))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.backbone(image))

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features [N, 2048] -> unit embeddings [N, D] (the head-only training path)."""
        embedding = F.normalize(self.head(self.neck(features)), p=2.0, dim=1)
        return F.normalize(embedding - self.centre, p=2.0, dim=1)


def build_model(embedding_dim: int = 512, seed: int = 0, arch: str = ARCH, neck: str = "none") -> EmbeddingNet:
    """A randomly initialised model; the same seed gives the same parameters."""
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EmbeddingNet(embedding_dim, arch, neck)
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


def with_centre(state: Mapping[str, torch.Tensor], embedding_dim: int, prefix: str = "") -> dict[str, torch.Tensor]:
    """A state dict from before the centring buffer existed gets a zero centre (what it computed then)."""
    state = dict(state)
    state.setdefault(f"{prefix}centre", torch.zeros(embedding_dim))
    return state


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
    if config.get("arch") not in ARCHS:
        raise ValueError(f"{path}: unsupported arch {config.get('arch')!r}")
    model = EmbeddingNet(int(config["embedding_dim"]), config["arch"], config.get("neck", "none"))
    model.load_state_dict(with_centre(ckpt["state_dict"], model.embedding_dim), strict=True)
    model.eval()
    return model, config
