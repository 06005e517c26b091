"""Where training starts from: a model directory (e.g. the active model), ImageNet weights, or random.

Returns the network, the preprocessing spec to train at, and a JSON description of the origin
(stored in model.json as ``init`` + ``init_source``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .calibrate import calibrate_batchnorm
from .embed import resolve_checkpoint
from .manifest import Record, image_source, select
from .model import ARCH, ARCHS, EmbeddingNet, build_model, load_backbone_weights, load_checkpoint
from .preprocess import default_spec, validate_spec
from .weights import resolve_weights, sha256_file

DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_EMBEDDING_DIM, DEFAULT_NECK = 160, 240, 512, "none"


@dataclass
class Initial:
    net: EmbeddingNet
    spec: dict[str, Any]
    kind: str  # "model" | "imagenet" | "random"
    source: dict[str, Any]


def initial_model(
    *,
    train: Sequence[Record],
    init_from: str | None = None,
    weights: str | None = None,
    weights_sha256: str | None = None,
    width: int | None = None,
    height: int | None = None,
    embedding_dim: int | None = None,
    seed: int = 0,
    calibrate: int = 512,
    batch_size: int = 32,
    arch: str | None = None,
    neck: str | None = None,
    emit: Callable[..., None] = lambda *a, **k: None,
    log: Callable[[str], None] = lambda m: None,
) -> Initial:
    if init_from and weights:
        raise ValueError("--init-from and --weights are mutually exclusive")
    if bool(weights) != bool(weights_sha256):
        raise ValueError("--weights and --weights-sha256 go together")

    if init_from:
        path = resolve_checkpoint(init_from)
        if not path.is_file():
            raise ValueError(f"--init-from: no model.pt at {path}")
        net, config = load_checkpoint(path)
        if arch and arch != net.arch:
            raise ValueError(f"--arch {arch}: the init model is a {net.arch}")
        if neck and neck != net.neck_kind:
            raise ValueError(f"--neck {neck}: the init model's neck is {net.neck_kind!r}")
        spec = dict(validate_spec(config["preprocessing"]))
        spec["width"], spec["height"] = width or spec["width"], height or spec["height"]
        if embedding_dim and embedding_dim != net.embedding_dim:
            log(f"init model has a {net.embedding_dim}-d head; starting a new {embedding_dim}-d head")
            net.head, net.embedding_dim = _new_head(ARCHS[net.arch], embedding_dim, seed), embedding_dim
        onnx = Path(path).with_name("model.onnx")
        source = {
            "dir": str(Path(path).parent.resolve()),
            "model_pt_sha256": sha256_file(path),
            "model_onnx_sha256": sha256_file(onnx) if onnx.is_file() else None,
            "init": config.get("init"),
        }
        return Initial(net, validate_spec(spec), "model", source)

    spec = default_spec(width or DEFAULT_WIDTH, height or DEFAULT_HEIGHT)
    net = build_model(embedding_dim or DEFAULT_EMBEDDING_DIM, seed, arch or ARCH, neck or DEFAULT_NECK)
    if weights:
        log(f"verifying weights {weights}")
        load_backbone_weights(net, resolve_weights(weights, weights_sha256))
        net.eval()
        return Initial(net, spec, "imagenet", {"weights": weights, "sha256": weights_sha256.lower(), "seed": seed})

    chosen = select(train, "train", calibrate, seed)
    log(f"random initialisation (seed {seed}); calibrating BatchNorm statistics on {len(chosen)} train posters")
    emit("calibrate", done=0, total=len(chosen))
    done = calibrate_batchnorm(
        net,
        [image_source(r, spec["width"], spec["height"]) for r in chosen],
        spec,
        batch_size=batch_size,
        on_progress=lambda d, t: emit("calibrate", done=d, total=t),
        workers=min(2, os.cpu_count() or 1),
    )
    return Initial(net, spec, "random", {"seed": seed, "calibration_images": done})


def _new_head(features: int, embedding_dim: int, seed: int) -> nn.Linear:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(features, embedding_dim)
