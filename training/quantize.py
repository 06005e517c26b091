"""``quantize``: an int8 copy of a model directory's ONNX model, calibrated on catalog posters.

Static quantisation with onnxruntime's tools: QDQ format, int8 weights per output channel (in
7 bits by default, so that every x86 CPU computes the same vectors: training/narrow.py),
uint8 activations (the U8S8 pair that VNNI and AVX-512 kernels take), calibrated by min/max on
posters of the manifest's train split read through the serving preprocessing (the rendered inputs
when their size matches). Only the convolutions are quantised: the head, the centring and the
final normalisation stay in float32, because what tells posters apart is a small difference
between nearly parallel vectors, which an 8-bit activation grid would erase. The stem (the first
convolution, on the normalised image) stays float32 too: on the trained default it lifts the
top-8 neighbour overlap with float32 from 0.897 to 0.914 for about 3 % of the network's work.

Writes DIR/model.onnx and DIR/model.json (the source's, with ``precision: int8`` and the
quantisation settings and parity figures) atomically, after checking the int8 model against the
float32 one on val posters: cosine of each poster's two embeddings, and the overlap of their
nearest neighbours among the checked posters.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import events
from .export import _check_destination, _publish
from .manifest import image_source, read_manifest, select
from .onnx_export import INPUT_NAME, onnx_embed
from .preprocess import load_batch, validate_spec

QUANTISED_OPS = ("Conv",)


class QuantizeError(RuntimeError):
    pass


@dataclass
class QuantizeOptions:
    model: str
    manifest: str
    out: str
    calibrate: int = 256
    check: int = 256
    batch_size: int = 32
    seed: int = 0
    force: bool = False
    weight_bits: int = 7  # 7: the same vectors on every x86 CPU (training/narrow.py says why); 8: the full int8 range


class _Posters:
    """onnxruntime's CalibrationDataReader: batches of preprocessed posters."""

    def __init__(self, paths: list[str], spec: dict[str, Any], batch_size: int, on_batch: Callable[[int], None]):
        self.paths, self.spec, self.batch_size, self.on_batch = paths, spec, batch_size, on_batch
        self.at = 0

    def get_next(self):
        if self.at >= len(self.paths):
            return None
        batch = load_batch(self.paths[self.at : self.at + self.batch_size], self.spec).numpy()
        self.at += len(batch)
        self.on_batch(self.at)
        return {INPUT_NAME: batch}

    def rewind(self) -> None:
        self.at = 0


def parity(reference: np.ndarray, candidate: np.ndarray, k: int = 8) -> dict[str, float]:
    """Cosine of each pair of embeddings (median, 1st percentile) and the mean overlap of each poster's k
    nearest others under the two models."""
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cand = candidate / np.linalg.norm(candidate, axis=1, keepdims=True)
    cos = np.sum(ref * cand, axis=1)
    k = min(k, len(ref) - 1)

    def nearest(e: np.ndarray) -> np.ndarray:
        sims = e @ e.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1, kind="stable")[:, :k]

    a, b = nearest(ref), nearest(cand)
    overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)])
    return {
        "cosine_median": round(float(np.median(cos)), 6),
        "cosine_p01": round(float(np.percentile(cos, 1)), 6),
        f"top{k}_overlap": round(float(overlap), 6),
        "posters": len(ref),
    }


def quantize(opts: QuantizeOptions, emit=events.emit, log=events.log) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    src = Path(opts.model)
    if not (src / "model.onnx").is_file() or not (src / "model.json").is_file():
        raise QuantizeError(f"{src}: not a model directory (model.onnx + model.json)")
    meta = json.loads((src / "model.json").read_text(encoding="utf-8"))
    if meta.get("precision") == "int8":
        raise QuantizeError(f"{src}: already int8")
    out = Path(opts.out).expanduser().resolve()
    _check_destination(out, opts.force)
    spec = validate_spec(meta["preprocessing"])
    records = read_manifest(opts.manifest)
    width, height = spec["width"], spec["height"]
    calibration = [image_source(r, width, height) for r in select(records, "train", opts.calibrate, opts.seed)]
    checked = [image_source(r, width, height) for r in select(records, "val", opts.check, opts.seed)]
    if not calibration:
        raise QuantizeError(f"{opts.manifest}: no train posters to calibrate on")
    emit("start", model=str(src), out=str(out), calibrate=len(calibration), check=len(checked))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        reader = _Posters(calibration, spec, opts.batch_size, lambda done: emit("calibrate", done=done, total=len(calibration)))
        convs = _quantised_nodes(src / "model.onnx")
        settings = {
            "format": "QDQ", "weights": "int8, per channel", "weight_bits": opts.weight_bits, "activations": "uint8", "calibration": "minmax",
            "ops": list(QUANTISED_OPS), "float32": "the stem convolution", "calibration_images": len(calibration),
            "seed": opts.seed,
        }  # fmt: skip
        quantize_static(
            str(src / "model.onnx"), str(tmp / "model.onnx"), reader,
            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, op_types_to_quantize=list(QUANTISED_OPS), nodes_to_quantize=convs,
            calibrate_method=CalibrationMethod.MinMax, reduce_range=opts.weight_bits == 7,
        )  # fmt: skip
        for leftover in tmp.glob("*.onnx.data"):
            leftover.unlink()
        figures: dict[str, float] = {}
        if len(checked) >= 2:
            batch = load_batch(checked, spec).numpy()
            figures = parity(onnx_embed(src / "model.onnx", batch), onnx_embed(tmp / "model.onnx", batch))
            emit("verify", **figures)
            log(f"int8 vs float32 on {len(checked)} val posters: {figures}")
        meta = {**meta, "precision": "int8", "quantization": {**settings, "parity": figures, "source_sha256": _sha(src / "model.onnx")}}
        (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for f in tmp.iterdir():
            if f.name not in ("model.onnx", "model.json"):
                shutil.rmtree(f) if f.is_dir() else f.unlink()
            else:
                f.chmod(0o644)
        tmp.chmod(0o755)
        _publish(tmp, out, opts.force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    emit("done", out=str(out), bytes=os.path.getsize(out / "model.onnx"))
    return out


def _quantised_nodes(path: Path) -> list[str]:
    """Every convolution but the first (the stem), by node name, in graph order."""
    import onnx

    convs = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type in QUANTISED_OPS]
    if any(not name for name in convs):
        raise QuantizeError(f"{path}: a convolution has no name to quantise it by")
    return convs[1:]


def _sha(path: Path) -> str:
    from .weights import sha256_file

    return sha256_file(path)
