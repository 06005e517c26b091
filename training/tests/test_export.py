import json
import os

import numpy as np
import onnx
import pytest
import torch

import training.export as export_mod
from training.embed import embed_images
from training.export import ExportError, ExportOptions, _publish, export_base
from training.model import build_model, load_checkpoint
from training.onnx_export import onnx_embed
from training.preprocess import default_spec, load_batch

from .conftest import SMALL_H, SMALL_W, run_cli


def cosine(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_export_writes_exactly_the_three_files(exported):
    out, events = exported
    assert sorted(os.listdir(out)) == ["model.json", "model.onnx", "model.pt"]
    assert not [p for p in os.listdir(out.parent) if p.startswith(".")]  # temp dir renamed away


def test_progress_events_on_stdout(exported):
    out, events = exported
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert events[-1]["out"] == str(out)
    cal = [e for e in events if e["event"] == "calibrate"]
    assert cal[-1] == {"event": "calibrate", "done": 16, "total": 16}
    assert [e["done"] for e in cal] == [0, 8, 16]
    assert {"onnx", "verify", "checkpoint"} <= set(kinds)


def test_model_json(exported):
    out, _ = exported
    meta = json.loads((out / "model.json").read_text())
    created = meta.pop("created_at")
    assert created.endswith("Z") and created[:2] == "20"
    assert meta == {
        "format": "marquee-model/1",
        "arch": "resnet50",
        "embedding_dim": 32,
        "input": {"name": "image", "width": SMALL_W, "height": SMALL_H},
        "output": {"name": "embedding"},
        "preprocessing": default_spec(SMALL_W, SMALL_H),
        "init": "random",
        "seed": 0,
        "calibration": {"images": 16},
        "torch": torch.__version__.split("+")[0],
    }


def test_onnx_graph_contract(exported):
    out, _ = exported
    proto = onnx.load(str(out / "model.onnx"))
    (inp,), (outp,) = proto.graph.input, proto.graph.output
    assert inp.name == "image" and outp.name == "embedding"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value  # symbolic batch
    assert [d.dim_value for d in dims[1:]] == [3, SMALL_H, SMALL_W]
    odims = outp.type.tensor_type.shape.dim
    assert odims[0].dim_param and odims[1].dim_value == 32
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert sum(t.ByteSize() for t in proto.graph.initializer) > 90e6  # the weights are inside


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_matches_pytorch_and_is_unit_norm(exported, poster_paths, batch):
    out, _ = exported
    model, config = load_checkpoint(out / "model.pt")
    x = load_batch(poster_paths[:batch], config["preprocessing"])
    got = onnx_embed(out / "model.onnx", x.numpy())
    with torch.no_grad():
        ref = model(x).numpy()
    assert got.shape == (batch, 32)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    assert cosine(got, ref).min() >= 0.9999
    if batch > 1:  # different posters give different embeddings
        assert cosine(got[:1], got[1:2])[0] < 0.9999


def test_embed_cli_is_the_eager_serving_path(exported, poster_paths):
    out, _ = exported
    proc = run_cli("embed", "--checkpoint", str(out / "model.pt"), *poster_paths[:2])
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    emb = np.array(json.loads(lines[0])["embeddings"], dtype=np.float32)
    assert emb.shape == (2, 32)
    spec = json.loads((out / "model.json").read_text())["preprocessing"]
    onnx_out = onnx_embed(out / "model.onnx", load_batch(poster_paths[:2], spec).numpy())
    assert cosine(emb, onnx_out).min() >= 0.9999
    assert np.allclose(embed_images(out, poster_paths[:2]), emb, atol=1e-6)  # DIR works as --checkpoint


def test_calibration_changed_batchnorm_statistics(exported):
    out, _ = exported
    model, _ = load_checkpoint(out / "model.pt")
    bn = model.backbone.bn1
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert bn.momentum == 0.1  # restored after the cumulative-average calibration
    deep = model.backbone.layer4[2].bn3
    assert deep.running_var.min() > 0


def test_export_is_deterministic_for_a_seed(exported, small_manifest, tmp_path):
    out, _ = exported
    opts = ExportOptions(manifest=str(small_manifest), out=str(tmp_path / "again"), width=SMALL_W,
                         height=SMALL_H, embedding_dim=32, seed=0, calibrate=16, batch_size=8)  # fmt: skip
    again = export_base(opts, emit=lambda *a, **k: None, log=lambda m: None)
    a = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(again / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = build_model(32, seed=1).state_dict()
    assert not torch.equal(a["backbone.conv1.weight"], other["backbone.conv1.weight"])
    assert torch.equal(build_model(32, seed=0).state_dict()["head.weight"], a["head.weight"])


def test_failed_export_leaves_nothing_behind(small_manifest, tmp_path, monkeypatch):
    def broken_export(model, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half an onnx file")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(export_mod, "export_onnx", broken_export)
    parent = tmp_path / "models"
    opts = ExportOptions(manifest=str(small_manifest), out=str(parent / "v1"), width=SMALL_W,
                         height=SMALL_H, embedding_dim=8, calibrate=0)  # fmt: skip
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_base(opts, emit=lambda *a, **k: None, log=lambda m: None)
    assert list(parent.iterdir()) == []


def test_existing_output_is_not_overwritten(small_manifest, tmp_path):
    out = tmp_path / "v1"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"the previous model")
    opts = ExportOptions(manifest=str(small_manifest), out=str(out), width=SMALL_W, height=SMALL_H)
    with pytest.raises(ExportError, match="not empty"):
        export_base(opts, emit=lambda *a, **k: None, log=lambda m: None)
    assert (out / "model.onnx").read_bytes() == b"the previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]


def test_publish_replaces_atomically(tmp_path):
    out, new, empty = tmp_path / "v1", tmp_path / ".v1.tmp-x", tmp_path / "v2"
    out.mkdir()
    (out / "old").write_text("old")
    new.mkdir()
    (new / "model.json").write_text("new")
    with pytest.raises(ExportError):
        _publish(new, out, force=False)
    _publish(new, out, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]
    assert [p.name for p in out.iterdir()] == ["model.json"]
    empty.mkdir()  # an empty destination directory is simply replaced
    new.mkdir()
    (new / "x").write_text("x")
    _publish(new, empty, force=False)
    assert [p.name for p in empty.iterdir()] == ["x"]


def test_cli_bad_manifest_is_a_clean_error(tmp_path):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"id": "tt1"}\n')
    proc = run_cli("export-base", "--manifest", str(bad), "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 1
    assert f"{bad}:1: missing key 'path'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["event"] == "error"
    assert not (tmp_path / "o").exists()
