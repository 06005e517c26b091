"""The genre head on the backbone's 2048 pooled features instead of the 512-d embedding (issue 16: would a
second ONNX output be worth shipping?).

Exposes the model's `view` tensor (the pooled features that feed the Linear neck) as a second output, fits
the head as training/genre_head.py does (logistic per genre on train, L2 chosen on val by mAP, Platt and
thresholds on val) for each feature variant, and reports val and test figures.

    MARQUEE_DATA_DIR=/tmp/demo-data node bin/marquee.js manifest /tmp/demo-96x144.jsonl 96x144
    .venv/bin/python bench/head_on_backbone.py models/default/model.onnx /tmp/demo-96x144.jsonl \
        bench/results/head-on-backbone.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.data import split_records  # noqa: E402
from training.genre_head import fit_genre_head, head_metrics, probabilities  # noqa: E402
from training.manifest import read_manifest  # noqa: E402
from training.pixels import load_uint8, normalise_batch  # noqa: E402
from training.vote import multi_hot  # noqa: E402

POOLED = "view"  # the ONNX export's name for the flattened average pool
BATCH = 64


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main(model_path: str, manifest: str, out: str) -> None:
    model = onnx.load(model_path)
    model.graph.output.append(onnx.helper.make_tensor_value_info(POOLED, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    spec = json.loads((Path(model_path).parent / "model.json").read_text())["preprocessing"]
    records = read_manifest(manifest)
    embedding, pooled, recs = {}, {}, {}
    for split in ("train", "val", "test"):
        recs[split] = split_records(records, split)
        parts = [
            session.run(["embedding", POOLED], {"image": normalise_batch(load_uint8(recs[split][s : s + BATCH], spec), spec).numpy()})
            for s in range(0, len(recs[split]), BATCH)
        ]
        embedding[split] = np.concatenate([e for e, _ in parts])
        pooled[split] = np.concatenate([p for _, p in parts])
    classes = sorted({g for r in recs["train"] for g in r.genres})
    y = {s: multi_hot([r.genres for r in recs[s]], classes) for s in recs}
    mean = pooled["train"].mean(0, keepdims=True)
    variants = {
        "embedding512": embedding,
        "backbone2048_unit": {s: unit(pooled[s]) for s in recs},
        "backbone2048_centred_unit": {s: unit(pooled[s] - mean) for s in recs},
        "backbone2048_sqrt_unit": {s: unit(np.sqrt(np.maximum(pooled[s], 0))) for s in recs},
    }
    variants["concat"] = {s: unit(np.concatenate([embedding[s], variants["backbone2048_centred_unit"][s]], 1)) for s in recs}
    results = {}
    for name, x in variants.items():
        t0 = time.monotonic()
        head = fit_genre_head(torch.from_numpy(x["train"]).float(), y["train"], torch.from_numpy(x["val"]).float(), y["val"], classes)
        test = head_metrics(probabilities(head, x["test"]), y["test"].numpy(), np.array(head["thresholds"]))
        results[name] = {"l2": head["fit"]["l2"], "val": head["fit"]["val_metrics"], "test": test}
        print(
            f"{name}: l2 {head['fit']['l2']}, val mAP {head['fit']['val_metrics']['map']} AUC {head['fit']['val_metrics']['auc']}; "
            f"test mAP {test['map']} AUC {test['auc']} F1 {test['f1_micro']} / {test['f1_macro']} ECE {test['ece']} "
            f"({time.monotonic() - t0:.0f} s)",
            flush=True,
        )
    Path(out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
