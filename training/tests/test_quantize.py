"""``quantize``: an int8 copy of a model directory, checked against float32."""

import json

import numpy as np
import onnx

from training.quantize import parity

from .conftest import run_cli


def test_parity_figures():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(20, 8)).astype(np.float32)
    same = parity(ref, ref * 3.0)  # a scaled copy: the same directions and neighbours
    assert same == {"cosine_median": 1.0, "cosine_p01": 1.0, "top8_overlap": 1.0, "posters": 20}
    other = parity(ref, rng.normal(size=(20, 8)).astype(np.float32))
    assert other["top8_overlap"] < 0.8 and other["cosine_median"] < 0.5


def test_quantize_writes_an_int8_model_with_its_parity(tmp_path, exported, small_manifest):
    base, _ = exported
    out = tmp_path / "int8"
    proc = run_cli("quantize", "--model", str(base), "--manifest", str(small_manifest), "--out", str(out),
                   "--calibrate", "8", "--check", "4", "--batch-size", "4")  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["event"] == "done" and sorted(p.name for p in out.iterdir()) == ["model.json", "model.onnx"]
    meta = json.loads((out / "model.json").read_text())
    source = json.loads((base / "model.json").read_text())
    assert meta["precision"] == "int8" and meta["input"] == source["input"] and meta["preprocessing"] == source["preprocessing"]
    q = meta["quantization"]
    assert q["format"] == "QDQ" and q["ops"] == ["Conv"] and q["calibration_images"] == 8
    assert set(q["parity"]) == {"cosine_median", "cosine_p01", "top3_overlap", "posters"}
    assert (out / "model.onnx").stat().st_size < (base / "model.onnx").stat().st_size / 3  # int8 weights
    graph = onnx.load(str(out / "model.onnx")).graph
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= {n.op_type for n in graph.node}
    # Every convolution reads dequantised int8 inputs but the stem, which stays float32.
    made_by = {o: n.op_type for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    quantised = [all(made_by.get(i) == "DequantizeLinear" for i in n.input[:2]) for n in convs]
    assert quantised[0] is False and all(quantised[1:]) and q["float32"] == "the stem convolution"
    again = run_cli("quantize", "--model", str(out), "--manifest", str(small_manifest), "--out", str(tmp_path / "x"),
                    check=False)  # fmt: skip
    assert again.returncode == 1 and "already int8" in again.stderr
