"""``fit-head``: fits the genre head (training.genre_head) of a model directory and writes it into its model.json.

The embeddings are the ONNX model's own (onnxruntime, the manifest's server-rendered inputs), so
the head is fitted on what the server serves; ``train`` calls ``fit_model_dir`` on the directory it
is about to publish, and the command does the same for a model trained before heads existed
(models/default). model.json is rewritten atomically; nothing else in the directory changes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .data import split_records
from .genre_head import fit_genre_head
from .manifest import read_manifest
from .pixels import load_uint8, normalise_batch
from .vote import multi_hot

BATCH = 64


def onnx_embeddings(model_file: Path, records, spec, log: Callable[[str], None] = lambda m: None) -> np.ndarray:
    """[N, D] embeddings of the records' server-rendered inputs by the ONNX model on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = []
    for start in range(0, len(records), BATCH):
        x = normalise_batch(load_uint8(records[start : start + BATCH], spec), spec).numpy()
        out.append(session.run(None, {name: x})[0])
        if (start // BATCH) % 20 == 0:
            log(f"embedded {min(start + BATCH, len(records))}/{len(records)}")
    return np.concatenate(out).astype(np.float32)


def fit_model_dir(model_dir: str | os.PathLike, manifest: str, log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Fits the head on the manifest's train posters, calibrates it on val, stores it in model.json; returns it."""
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    records = read_manifest(manifest)
    train, val = split_records(records, "train"), split_records(records, "val")
    if not train or not val:
        raise ValueError(f"{manifest}: the head needs train and val posters")
    classes = sorted({g for r in train for g in r.genres})
    spec = meta["preprocessing"]
    x = {name: torch.from_numpy(onnx_embeddings(model_dir / "model.onnx", recs, spec, log)) for name, recs in (("train", train), ("val", val))}
    y = {name: multi_hot([r.genres for r in recs], classes) for name, recs in (("train", train), ("val", val))}
    head = fit_genre_head(x["train"], y["train"], x["val"], y["val"], classes)
    meta["genre_head"] = head
    tmp = model_dir / f".model.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, model_dir / "model.json")
    log(f"genre head: val mAP {head['fit']['val_metrics']['map']}, AUC {head['fit']['val_metrics']['auc']} (l2 {head['fit']['l2']})")
    return head
