"""``export-base``: build the untrained base model and write model.onnx, model.pt and model.json.

Everything is written into a temporary directory beside the destination and renamed into
place only after the ONNX model has been verified against PyTorch, so a reader never sees
a half-written model at ``out``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from . import events
from .initial import initial_model
from .manifest import image_source, read_manifest, select
from .model import ARCH, save_checkpoint
from .onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx, verify_onnx
from .preprocess import default_spec, load_batch

MODEL_FORMAT = "marquee-model/1"
VERIFY_IMAGES = 3


class ExportError(RuntimeError):
    pass


@dataclass
class ExportOptions:
    manifest: str
    out: str
    width: int = 160
    height: int = 240
    embedding_dim: int = 512
    seed: int = 0
    calibrate: int = 512
    batch_size: int = 32
    weights: str | None = None
    weights_sha256: str | None = None
    opset: int | None = None
    force: bool = False


def export_base(
    opts: ExportOptions,
    emit: Callable[..., None] = events.emit,
    log: Callable[[str], None] = events.log,
) -> Path:
    t0 = time.monotonic()
    out = Path(opts.out).expanduser().resolve()
    _check_destination(out, opts.force)
    if opts.weights and not opts.weights_sha256:
        raise ExportError("--weights needs --weights-sha256")
    if opts.calibrate < 0:
        raise ExportError("--calibrate must be >= 0")
    spec = default_spec(opts.width, opts.height)
    records = read_manifest(opts.manifest)
    emit("start", out=str(out), width=opts.width, height=opts.height, embedding_dim=opts.embedding_dim)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        if not opts.weights:
            chosen = select(records, "train", opts.calibrate, opts.seed)
            if opts.calibrate > 0 and not chosen:
                raise ExportError(f"{opts.manifest}: no 'train' records to calibrate BatchNorm on")
            if len(chosen) < opts.calibrate:
                log(f"warning: only {len(chosen)} train posters for --calibrate {opts.calibrate}")
        initial = initial_model(
            train=records,
            weights=opts.weights,
            weights_sha256=opts.weights_sha256,
            width=opts.width,
            height=opts.height,
            embedding_dim=opts.embedding_dim,
            seed=opts.seed,
            calibrate=opts.calibrate,
            batch_size=opts.batch_size,
            emit=emit,
            log=log,
        )
        model, init = initial.net, initial.kind
        calibrated = initial.source.get("calibration_images", 0)
        if opts.weights:
            emit("weights", source=opts.weights, sha256=opts.weights_sha256.lower())

        config = {
            "arch": ARCH,
            "neck": model.neck_kind,
            "embedding_dim": opts.embedding_dim,
            "width": opts.width,
            "height": opts.height,
            "preprocessing": spec,
            "init": init,
            "seed": opts.seed,
            "calibration_images": calibrated,
            "weights": {"source": opts.weights, "sha256": opts.weights_sha256.lower()} if opts.weights else None,
        }
        save_checkpoint(model, config, tmp / "model.pt")
        emit("checkpoint", file="model.pt")

        log("exporting ONNX")
        opset = export_onnx(model, tmp / "model.onnx", opts.width, opts.height, opts.opset)
        emit("onnx", file="model.onnx", opset=opset, bytes=(tmp / "model.onnx").stat().st_size)

        verify_records = _verification_records(records)
        batch = load_batch([image_source(r, spec["width"], spec["height"]) for r in verify_records], spec)
        cosines = verify_onnx(model, tmp / "model.onnx", batch)
        emit("verify", images=len(verify_records), min_cosine=min(cosines.values()))

        meta = {
            "format": MODEL_FORMAT,
            "arch": ARCH,
            "embedding_dim": opts.embedding_dim,
            "input": {"name": INPUT_NAME, "width": opts.width, "height": opts.height},
            "output": {"name": OUTPUT_NAME},
            "preprocessing": spec,
            "init": init,
            "seed": opts.seed,
            "calibration": {"images": calibrated},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "torch": torch.__version__.split("+")[0],
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for f in tmp.iterdir():
            f.chmod(0o644)
        tmp.chmod(0o755)
        _publish(tmp, out, opts.force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out} in {time.monotonic() - t0:.1f} s")
    emit("done", out=str(out), seconds=round(time.monotonic() - t0, 1))
    return out


def _check_destination(out: Path, force: bool) -> None:
    if out.exists() and not force:
        if not out.is_dir():
            raise ExportError(f"{out} exists and is not a directory")
        if any(out.iterdir()):
            raise ExportError(f"{out} already exists and is not empty (use --force to replace it)")


def _publish(tmp: Path, out: Path, force: bool) -> None:
    """Atomically move the finished directory into place (rename(2) within one filesystem)."""
    _check_destination(out, force)
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        os.replace(tmp, out)  # an empty directory at ``out`` is replaced atomically
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


def _verification_records(records) -> list:
    chosen: list = []
    for split in ("val", "test", "train"):
        chosen += select(records, split, VERIFY_IMAGES - len(chosen), seed=0)
        if len(chosen) >= VERIFY_IMAGES:
            break
    if not chosen:
        raise ExportError("manifest has no posters to verify the ONNX export on")
    return chosen
