"""The teacher (nsfwjs's InceptionV3 from node_modules, run by training.keras_graph) against nsfwjs itself.

nsfwjs's own code, on TensorFlow.js's pure-JavaScript CPU backend (nsfwjs_reference.mjs), classifies two
real posters chosen because its answer for them is far from certain (so every class's probability
carries information); the PyTorch teacher must give the same probabilities from the same decoded pixels
through nsfwjs's preprocessing (measured on this 2-core AMD EPYC: at most 6e-6 apart, log-probabilities
5e-5), and the same pooled mixed5 output (relative error 1.3e-6). Also: TensorFlow's 'same' padding,
Flatten's channels-last order and the weight decoding on small hand-made cases, and the feature cache
through the CLI.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from training.keras_graph import KerasGraph, same_padding
from training.manifest import Record
from training.nsfwjs_files import MODEL_SUBDIR, decode_weights, nsfwjs_dir, parse_js_literal, read_inception_v3
from training.preprocess import load_image, open_image, to_srgb8
from training.teacher import CLASSES, Teacher, feature_spec, nsfwjs_input
from training.teacher_features import TeacherFeatureSpec, load_teacher_features, teacher_features

from .conftest import REPO, run_cli

REFERENCE_SCRIPT = REPO / "training" / "tests" / "nsfwjs_reference.mjs"
# nsfwjs is unsure of these: Drawing 0.57 / Hentai 0.24 / Neutral 0.19, and Porn 0.79 / Hentai 0.10 / Neutral 0.09.
POSTERS = ("tt0089272", "tt0085694")
ENDPOINT = "mixed5"
PROBABILITY_TOLERANCE = 1e-4  # absolute, every class
LOG_PROBABILITY_TOLERANCE = 1e-3
FEATURE_TOLERANCE = 1e-4  # relative L2 error of the pooled endpoint


def _require_nsfwjs() -> None:
    if not (nsfwjs_dir() / MODEL_SUBDIR / "model.min.js").is_file():
        pytest.fail(f"{nsfwjs_dir()} is absent (run `npm install`): the teacher ships in it and must be tested")


@pytest.fixture(scope="module")
def teacher_files():
    _require_nsfwjs()
    return read_inception_v3()


@pytest.fixture(scope="module")
def teacher(teacher_files) -> Teacher:
    return Teacher(KerasGraph(teacher_files.topology, teacher_files.weights))


@pytest.fixture(scope="module")
def poster_files(catalog) -> list[str]:
    return [str(catalog / "images" / f"{pid}.jpg") for pid in POSTERS]


@pytest.fixture(scope="module")
def reference(poster_files) -> dict:
    _require_nsfwjs()
    node = shutil.which("node")
    assert node, "node is not on PATH"
    proc = subprocess.run(
        [node, str(REFERENCE_SCRIPT), "--endpoint", ENDPOINT, *poster_files],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"nsfwjs_reference.mjs failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


def _pixels(path: str) -> np.ndarray:
    return np.asarray(to_srgb8(open_image(path)))


def test_the_package_files_are_what_the_reader_expects(teacher_files):
    topology = teacher_files.topology
    layers = topology["model_config"]["config"]["layers"]
    assert topology["keras_version"] == "2.2.4"
    assert len(layers) == 318
    assert layers[0]["config"]["batch_input_shape"] == [None, 299, 299, 3]
    assert sum(w.size for w in teacher_files.weights.values()) == 22_360_869
    assert {layer["name"] for layer in layers} >= {f"mixed{i}" for i in range(11)}


def test_probabilities_match_nsfwjs(teacher, reference, poster_files):
    assert reference["classes"] == list(CLASSES)
    for path, ref in zip(poster_files, reference["images"]):
        pixels = _pixels(path)
        # The same decoded pixels on both sides, or the comparison would measure JPEG decoders.
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == ref["pixels_sha256"], path
        ours = teacher.probabilities(nsfwjs_input(pixels))[0].double().numpy()
        theirs = np.array(ref["probabilities"])
        assert np.abs(ours - theirs).max() <= PROBABILITY_TOLERANCE, (path, ours, theirs)
        assert np.abs(np.log(ours) - np.log(theirs)).max() <= LOG_PROBABILITY_TOLERANCE, (path, ours, theirs)
        assert ours.argmax() == theirs.argmax()


def test_pooled_layer_matches_nsfwjs(teacher, reference, poster_files):
    for path, ref in zip(poster_files, reference["images"]):
        ours = teacher.pooled(nsfwjs_input(_pixels(path)), [ENDPOINT])[ENDPOINT][0].double().numpy()
        theirs = np.array(ref["endpoints"][ENDPOINT])
        assert ours.shape == (768,)
        assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) <= FEATURE_TOLERANCE


def test_same_padding_is_tensorflows():
    # TensorFlow: ceil(in/stride) outputs; total padding split with the odd pixel after.
    assert same_padding(6, 3, 2) == (0, 1)  # PyTorch's symmetric padding=1 would shift every window
    assert same_padding(5, 3, 2) == (1, 1)
    assert same_padding(7, 4, 1) == (1, 2)
    assert same_padding(299, 3, 2) == (1, 1)
    assert same_padding(8, 1, 2) == (0, 0)


def test_small_keras_model_matches_a_channels_last_reference():
    """Strided 'same' conv on an even size (asymmetric padding), 'same' average pooling (in-bounds count),
    BatchNormalization, Flatten (channels-last order) and Dense, against NumPy written from Keras's rules."""
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 2, 3)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    bn = {k: rng.uniform(0.5, 1.5, size=3).astype(np.float32) for k in ("gamma", "beta", "moving_mean", "moving_variance")}  # noqa: E501
    dense = rng.normal(size=(3 * 3 * 3, 4)).astype(np.float32)
    weights = {"c/kernel": kernel, "c/bias": bias, "d/kernel": dense, "d/bias": np.zeros(4, np.float32)}
    weights.update({f"b/{k}": v for k, v in bn.items()})
    conv = {"filters": 3, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same", "activation": "relu",
            "use_bias": True, "dilation_rate": [1, 1], "data_format": "channels_last"}  # fmt: skip
    layers = [
        {"name": "in", "class_name": "InputLayer", "config": {"batch_input_shape": [None, 6, 6, 2]},
         "inbound_nodes": []},  # fmt: skip
        {"name": "c", "class_name": "Conv2D", "config": conv, "inbound_nodes": [[["in", 0, 0, {}]]]},
        {"name": "b", "class_name": "BatchNormalization", "config": {"axis": 3, "epsilon": 1e-3, "center": True,
         "scale": True}, "inbound_nodes": [[["c", 0, 0, {}]]]},  # fmt: skip
        {"name": "p", "class_name": "AveragePooling2D", "config": {"pool_size": [2, 2], "strides": [1, 1],
         "padding": "same", "data_format": "channels_last"}, "inbound_nodes": [[["b", 0, 0, {}]]]},  # fmt: skip
        {"name": "f", "class_name": "Flatten", "config": {"data_format": "channels_last"},
         "inbound_nodes": [[["p", 0, 0, {}]]]},  # fmt: skip
        {"name": "d", "class_name": "Dense", "config": {"units": 4, "activation": "softmax", "use_bias": True},
         "inbound_nodes": [[["f", 0, 0, {}]]]},  # fmt: skip
    ]
    topology = {"model_config": {"class_name": "Model", "config": {
        "layers": layers, "input_layers": [["in", 0, 0]], "output_layers": [["d", 0, 0]]}}}  # fmt: skip
    graph = KerasGraph(topology, weights)
    x = rng.normal(size=(2, 6, 6, 2)).astype(np.float32)  # NHWC, as Keras sees it

    # Keras/TensorFlow by hand: 'same' with stride 2 on 6 pads 0 before and 1 after.
    xp = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    c = np.zeros((2, 3, 3, 3), np.float32)
    for i in range(3):
        for j in range(3):
            c[:, i, j, :] = np.einsum("nhwc,hwco->no", xp[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :], kernel) + bias
    c = np.maximum(c, 0)
    b = (c - bn["moving_mean"]) / np.sqrt(bn["moving_variance"] + 1e-3) * bn["gamma"] + bn["beta"]
    p = np.zeros_like(b)  # 2x2 window, stride 1, 'same' on 3: pads 0 before, 1 after; mean of in-bounds values
    for i in range(3):
        for j in range(3):
            p[:, i, j, :] = b[:, i : i + 2, j : j + 2, :].mean(axis=(1, 2))
    logits = p.reshape(2, -1) @ dense
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)

    got = graph(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))["d"].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    inner = graph(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), ["c"])["c"].numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(inner, c, rtol=1e-5, atol=1e-5)


def test_js_literals_and_quantised_weights():
    assert parse_js_literal('{a:!0,b:!1,c:.5,d:-.25,e:[1,2e-3,"x\\"y"],f:null,"g h":{}}') == {
        "a": True, "b": False, "c": 0.5, "d": -0.25, "e": [1, 0.002, 'x"y'], "f": None, "g h": {},
    }  # fmt: skip
    specs = [
        {"name": "a", "shape": [2], "dtype": "float32", "quantization": {"min": -1.0, "scale": 0.5, "dtype": "uint8"}},
        {"name": "b", "shape": [1, 2], "dtype": "float32",
         "quantization": {"min": 0.25, "scale": 0.125, "dtype": "uint8"}},  # fmt: skip
    ]
    out = decode_weights(bytes([0, 4, 8, 255]), specs)
    np.testing.assert_array_equal(out["a"], np.array([-1.0, 1.0], np.float32))
    np.testing.assert_array_equal(out["b"], np.array([[1.25, 0.25 + 0.125 * 255]], np.float32))
    with pytest.raises(RuntimeError, match="describes 4 bytes"):
        decode_weights(bytes(5), specs)


def test_feature_cache_computes_each_poster_once(tmp_path, catalog, catalog_rows, teacher):
    rows = catalog_rows[:4]
    paths = []
    for r in rows:  # copies, so that one picture can change under its id
        paths.append(tmp_path / f"{r['id']}.jpg")
        shutil.copyfile(catalog / r["file"], paths[-1])
    records = [
        Record(r["id"], str(p), tuple(r["genres"].split("|")), r["single_genre"], r["split"]) for r, p in zip(rows, paths)
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"id": r.id, "path": r.path, "genres": list(r.genres),
                        "single_genre": r.single_genre, "split": r.split}) + "\n" for r in records[:3]))  # fmt: skip
    out = tmp_path / "features.npz"
    args = ["teacher-features", "--manifest", str(manifest), "--layer", "mixed0", "--width", "80", "--height", "120",
            "--precision", "32", "--out", str(out), "--workers", "0"]  # fmt: skip

    first = json.loads(run_cli(*args).stdout.splitlines()[-1])
    assert (first["event"], first["computed"], first["hits"], first["dims"]) == ("done", 3, 0, {"mixed0": 256})
    again = json.loads(run_cli(*args).stdout.splitlines()[-1])
    assert (again["computed"], again["hits"]) == (0, 3)

    spec = TeacherFeatureSpec(("mixed0",), "avg", 80, 120, "keras", "32")
    stored = load_teacher_features(out)
    assert sorted(stored.ids) == stored.ids == sorted(r.id for r in records[:3])
    direct = teacher.pooled(torch.stack([_feature_input(r.path, spec) for r in records[:3]]), ["mixed0"])["mixed0"]
    np.testing.assert_allclose(stored.take([r.id for r in records[:3]]).numpy(), direct.numpy(), rtol=1e-4, atol=1e-5)

    # A new poster is computed, the others reused; a changed picture is computed again.
    shutil.copyfile(catalog / catalog_rows[10]["file"], paths[0])
    table, info = teacher_features(list(reversed(records)), spec, out, teacher=teacher)
    assert (info["computed"], info["hits"]) == (2, 2)
    assert table.ids == [r.id for r in reversed(records)]
    changed = teacher.pooled(_feature_input(str(paths[0]), spec)[None], ["mixed0"])["mixed0"][0]
    np.testing.assert_allclose(table.take([records[0].id])[0].numpy(), changed.numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(changed.numpy(), direct[0].numpy(), rtol=1e-2)
    with pytest.raises(KeyError, match="no teacher features"):
        table.take(["tt-none"])


def test_a_stopped_extraction_keeps_what_it_computed(tmp_path, catalog, catalog_rows, teacher):
    records = [Record(r["id"], str(catalog / r["file"]), tuple(r["genres"].split("|")), r["single_genre"], r["split"])
               for r in catalog_rows[20:24]]  # fmt: skip
    spec = TeacherFeatureSpec(("mixed0",), "avg", 80, 120, "keras", "32")
    out = tmp_path / "features.npz"

    def stop_after_two(done: int, total: int, rate: float) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        teacher_features(records, spec, out, teacher=teacher, batch_size=1, save_every=1, on_progress=stop_after_two)
    assert load_teacher_features(out).ids == sorted(r.id for r in records[:2])
    _, info = teacher_features(records, spec, out, teacher=teacher, batch_size=1)
    assert (info["computed"], info["hits"]) == (2, 2)


def _feature_input(path: str, spec: TeacherFeatureSpec) -> torch.Tensor:
    return load_image(path, feature_spec(spec.width, spec.height, spec.input_range))
