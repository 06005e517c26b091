"""``quantize``: an int8 copy of a model directory, checked against float32."""

import json

import numpy as np
import onnx

from onnx import numpy_helper

from training.manifest import image_source, read_manifest
from training.onnx_export import onnx_embed
from training.preprocess import load_batch
from training.quantize import parity

from .conftest import run_cli


def integer_conv_weights(path) -> list[np.ndarray]:
    """The weights of each convolution that runs on integer kernels (its input and weight both dequantised)."""
    graph = onnx.load(str(path)).graph
    made_by = {o: n for n in graph.node for o in n.output}
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    dq = lambda name: made_by.get(name) if made_by.get(name) is not None and made_by[name].op_type == "DequantizeLinear" else None  # noqa: E731
    convs = [n for n in graph.node if n.op_type == "Conv" and dq(n.input[0]) and dq(n.input[1])]
    return [initializers[dq(n.input[1]).input[0]] for n in convs]


def dequantised_params(path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(values, scale) of every dequantised weight and bias initializer, by name order, in a shape that broadcasts."""
    graph = onnx.load(str(path)).graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    out = []
    for n in sorted((n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in initializers), key=lambda n: n.name):
        values, scale = initializers[n.input[0]].astype(np.float64), initializers[n.input[1]].astype(np.float64)
        out.append((values, scale.reshape(-1, *([1] * (values.ndim - 1))) if scale.ndim == 1 else scale))
    return out


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
    # 7-bit weights by default: no saturating 16-bit pair sums on an AVX2-only CPU (training/narrow.py).
    weights = integer_conv_weights(out / "model.onnx")
    assert weights and q["weight_bits"] == 7 and max(np.abs(w.astype(int)).max() for w in weights) <= 64
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


def test_narrow_weights_fits_an_int8_model_in_7_bits_and_keeps_its_vectors(tmp_path, exported, small_manifest):
    base, _ = exported
    int8 = tmp_path / "int8"
    run_cli("quantize", "--model", str(base), "--manifest", str(small_manifest), "--out", str(int8),
            "--calibrate", "8", "--check", "0", "--batch-size", "4", "--weight-bits", "8")  # fmt: skip
    before = integer_conv_weights(int8 / "model.onnx")
    assert max(np.abs(w.astype(int)).max() for w in before) > 64, "8-bit weights use the full range"
    out = tmp_path / "narrow"
    proc = run_cli("narrow-weights", "--model", str(int8), "--out", str(out))
    assert json.loads(proc.stdout.splitlines()[-1]) == {"event": "done", "out": str(out), "narrowed": len(before)}
    after = integer_conv_weights(out / "model.onnx")
    assert len(after) == len(before) > 0
    assert max(np.abs(w.astype(int)).max() for w in after) <= 64
    for w8, w7 in zip(before, after):
        assert np.array_equal(w7, np.round(w8 / 2).astype(np.int8))
    # What each convolution computes in float is unchanged but for rounding: weights and biases within half a new step.
    params8, params7 = dequantised_params(int8 / "model.onnx"), dequantised_params(out / "model.onnx")
    assert len(params7) == len(params8) > 0
    for (w8, s8), (w7, s7) in zip(params8, params7):
        assert np.allclose(s7, 2 * s8)
        assert np.all(np.abs(w7 * s7 - w8 * s8) <= s8 * 1.0001)
    meta = json.loads((out / "model.json").read_text())
    assert meta["precision"] == "int8" and meta["quantization"]["weight_bits"] == 7
    assert len(meta["quantization"]["narrowed_from_sha256"]) == 64
    spec = json.loads((int8 / "model.json").read_text())["preprocessing"]
    paths = [image_source(r, spec["width"], spec["height"]) for r in read_manifest(str(small_manifest))[:8]]
    batch = load_batch(paths, spec).numpy()
    figures = parity(onnx_embed(int8 / "model.onnx", batch), onnx_embed(out / "model.onnx", batch), k=3)
    # The same network with a bit of weight precision less (0.9992 median on the trained default; this
    # small untrained model, its embedding a small difference of nearly parallel vectors, is more sensitive).
    assert figures["cosine_median"] > 0.85, figures
    refused = run_cli("narrow-weights", "--model", str(base), "--out", str(tmp_path / "x"), check=False)
    assert refused.returncode == 1 and "not an int8 model" in refused.stderr
