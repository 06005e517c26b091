"""Real tiny training runs: head mode through the CLI, full mode and resume in-process, and SIGTERM."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from training.cli import main
from training.data import PosterDataset, class_names, split_records
from training.manifest import read_manifest
from training.model import build_model, load_checkpoint
from training.onnx_export import onnx_embed
from training.preprocess import default_spec
from training.train import OUTPUT_FILES, TrainError, TrainOptions, train

from .conftest import REPO, SMALL_H, SMALL_W, run_cli

TINY = ["--batch-size", "8", "--workers", "0", "--progress-interval", "0"]


def events_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def val_batch(manifest, spec, n=4) -> torch.Tensor:
    val = split_records(read_manifest(manifest), "val")[:n]
    ds = PosterDataset(val, spec, torch.zeros(len(val), 1))
    return torch.stack([ds[i][0] for i in range(len(ds))])


def check_outputs(out, manifest, embedding_dim):
    assert sorted(os.listdir(out)) == sorted(OUTPUT_FILES)
    assert not [p for p in os.listdir(out.parent) if p.startswith(".")]  # temp dir renamed away
    model, config = load_checkpoint(out / "model.pt")
    x = val_batch(manifest, config["preprocessing"])
    got = onnx_embed(out / "model.onnx", x.numpy())
    with torch.no_grad():
        ref = model(x).numpy()
    assert got.shape == (len(x), embedding_dim)
    cos = np.sum(got * ref, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.9999
    return json.loads((out / "model.json").read_text()), json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def head_run(tmp_path_factory, train_manifest, exported):
    """2 epochs of head mode from the exported base model, through the CLI (test records missing on disk)."""
    base, _ = exported
    out = tmp_path_factory.mktemp("head") / "model"
    cache = tmp_path_factory.mktemp("features")
    proc = run_cli("train", "--manifest", str(train_manifest), "--out", str(out), "--init-from", str(base),
                   "--recipe", "paper", "--mode", "head", "--epochs", "2", "--cache-dir", str(cache), *TINY)  # fmt: skip
    return out, events_of(proc.stdout), proc.stderr, cache


def test_head_run_writes_every_output_with_onnx_parity(head_run, train_manifest, exported):
    out, events, _, _ = head_run
    meta, metrics = check_outputs(out, train_manifest, 32)
    records = read_manifest(train_manifest)
    assert meta["format"] == "marquee-model/1" and meta["mode"] == "head" and meta["init"] == "model"
    assert meta["init_source"]["dir"] == str(exported[0])
    assert meta["input"] == {"name": "image", "width": SMALL_W, "height": SMALL_H}
    assert meta["output"] == {"name": "embedding"} and meta["embedding_dim"] == 32
    assert meta["preprocessing"] == default_spec(SMALL_W, SMALL_H)
    assert meta["labels"] == {"field": "genres", "classes": class_names(split_records(records, "train"))}
    assert meta["training"]["images"] == {"train": 40, "val": 8}
    assert meta["training"]["proxy_lr_multiplier"] == 100.0 and meta["training"]["epochs"] == 2
    assert metrics["split"] == "val" and metrics["gallery_split"] == "train" and metrics["queries"] == 8
    assert metrics["epoch"] == meta["training"]["best_epoch"] == events[-1]["best_epoch"]
    assert {k: v for k, v in metrics.items() if k != "history"} == meta["metrics"]
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    # the best epoch is the one whose genre head ranks val posters best
    best = max(metrics["history"], key=lambda h: (h["head_map"], -h["epoch"]))
    assert best["epoch"] == metrics["epoch"]
    assert set(metrics["head"]) == {"map", "auc", "per_genre"} and 0 <= metrics["head"]["map"] <= 1
    for name in ("recall@1", "recall@3", "recall@8", "majority@1", "majority@3", "majority@5"):
        assert set(metrics[name]) == {"micro", "macro", "per_genre"}
    assert set(metrics["vote"]) == {"k5", "k10"} and 0 <= metrics["vote"]["k5"]["map"] <= 1
    assert set(metrics["vote"]["k10"]["per_genre"]["Drama"]) == {"ap", "auc", "positives"}


def test_trained_models_carry_a_calibrated_genre_head(head_run, train_manifest):
    out, events, _, _ = head_run
    meta = json.loads((out / "model.json").read_text())
    head = meta["genre_head"]
    records = read_manifest(train_manifest)
    classes = sorted({g for r in split_records(records, "train") for g in r.genres})
    assert head["format"] == "marquee-genre-head/1" and head["classes"] == classes
    assert np.array(head["weight"]).shape == (len(classes), 32) and len(head["bias"]) == len(classes)
    assert len(head["calibration"]["scale"]) == len(head["thresholds"]) == len(classes)
    assert all(0 < t < 1 for t in head["thresholds"])
    assert head["fit"]["train"] == 40 and head["fit"]["val"] == 8
    assert [e for e in events if e["event"] == "genre_head"][0]["map"] == head["fit"]["val_metrics"]["map"]


def test_head_run_events_and_backbone_untouched(head_run, exported):
    out, events, stderr, _ = head_run
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "error" not in kinds
    assert events[-1]["out"] == str(out)
    starts = [e for e in events if e["event"] == "epoch_start"]
    got = [(e["epoch"], e["epochs"], e["steps"], e["backbone_frozen"]) for e in starts]
    assert got == [(1, 2, 5, True), (2, 2, 5, True)]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and set(progress[0]) == {"event", "epoch", "step", "steps", "loss", "img_per_s", "eta_s"}
    vals = [e for e in events if e["event"] == "validation"]
    assert [v["epoch"] for v in vals] == [1, 2] and "recall@1" in vals[0]["metrics"]
    assert [e["split"] for e in events if e["event"] == "features"][-1] == "val"
    base, _ = load_checkpoint(exported[0] / "model.pt")
    trained, _ = load_checkpoint(out / "model.pt")
    assert torch.equal(base.backbone.conv1.weight, trained.backbone.conv1.weight)
    assert torch.equal(base.backbone.layer4[2].bn3.running_var, trained.backbone.layer4[2].bn3.running_var)
    assert not torch.equal(base.head.weight, trained.head.weight)
    assert "Traceback" not in stderr


def test_head_features_are_cached(head_run):
    _, _, stderr, cache = head_run
    assert "40 computed" in stderr and len(list(cache.glob("*.pt"))) == 1


def test_full_run_random_init_with_warmup(tmp_path, train_manifest):
    got = []
    opts = TrainOptions(manifest=str(train_manifest), out=str(tmp_path / "full"), recipe="paper", mode="full", epochs=2,
                        warmup_epochs=1, batch_size=8, limit_batches=1, width=SMALL_W, height=SMALL_H,
                        embedding_dim=16, calibrate=8, workers=0, progress_interval=0)  # fmt: skip
    out = train(opts, emit=lambda event, **f: got.append({"event": event, **f}), log=lambda m: None)
    meta, metrics = check_outputs(out, train_manifest, 16)
    assert meta["mode"] == "full" and meta["init"] == "random"
    assert meta["init_source"] == {"seed": 0, "calibration_images": 8}
    starts = [e for e in got if e["event"] == "epoch_start"]
    assert [(e["steps"], e["backbone_frozen"]) for e in starts] == [(1, True), (1, False)]
    # The backbone trained in epoch 2 only (last.ckpt holds epoch 2; the random init is seeded).
    init = build_model(16, seed=0).backbone.conv1.weight
    last = torch.load(out / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2 and not torch.equal(last["state_dict"]["net.backbone.conv1.weight"], init)
    assert last["marquee"]["mode"] == "full" and last["marquee"]["classes"] == meta["labels"]["classes"]
    model, _ = load_checkpoint(out / "model.pt")
    assert torch.equal(model.backbone.conv1.weight, init) == (metrics["epoch"] == 1)


def test_cpu_recipe_trains_the_whole_network_and_its_loss_falls(tmp_path, train_manifest):
    """The CPU recipe on a small catalog: posters in memory, reduced training crops, bf16 where the CPU has it,
    multi-label proxy-anchor loss; the loss falls, the network (not just the head) changes, outputs are written."""
    got = []
    opts = TrainOptions(manifest=str(train_manifest), out=str(tmp_path / "cpu"), recipe="cpu", epochs=6, batch_size=8,
                        width=SMALL_W, height=SMALL_H, train_width=48, train_height=72, val_every=3, crop_scale=0.9,
                        embedding_dim=16, calibrate=8, workers=0, progress_interval=0)  # fmt: skip
    out = train(opts, emit=lambda event, **f: got.append({"event": event, **f}), log=lambda m: None)
    meta, metrics = check_outputs(out, train_manifest, 16)
    start = next(e for e in got if e["event"] == "start")
    assert (start["recipe"], start["labels"], start["train_width"], start["train_height"]) == ("cpu", "genres", 48, 72)
    assert meta["training"]["recipe"] == "cpu" and meta["training"]["data"] == "memory"
    assert meta["training"]["schedule"] == "cosine" and meta["input"]["width"] == SMALL_W  # served at its own size
    assert [e["epoch"] for e in got if e["event"] == "validation"] == [3, 6]
    losses = [e["loss"] for e in got if e["event"] == "validation"]
    assert losses[-1] < losses[0], losses
    model, _ = load_checkpoint(out / "model.pt")
    assert not torch.equal(model.backbone.conv1.weight, build_model(16, seed=0).backbone.conv1.weight)
    assert model.centre.norm() > 0  # centred on the train gallery's mean embedding


def test_a_run_with_the_teacher_distils_and_writes_every_output(tmp_path, train_manifest, exported):
    """Head mode from the exported base with the pretrained teacher (nsfwjs's InceptionV3, from node_modules):
    its features are computed once and cached, the distillation term is reported, every output is written."""
    if not (REPO / "node_modules" / "nsfwjs").is_dir():
        pytest.fail("node_modules/nsfwjs is missing: run npm install (the teacher ships in it)")
    got = []
    cache = tmp_path / "cache"
    opts = TrainOptions(manifest=str(train_manifest), out=str(tmp_path / "taught"), recipe="paper", mode="head", epochs=2,
                        batch_size=8, init_from=str(exported[0]), workers=0, progress_interval=0, teacher_layer="mixed2",
                        teacher_weight=4.0, cache_dir=str(cache))  # fmt: skip
    out = train(opts, emit=lambda event, **f: got.append({"event": event, **f}), log=lambda m: None)
    meta, metrics = check_outputs(out, train_manifest, 32)
    assert meta["training"]["teacher_layer"] == "mixed2" and meta["training"]["teacher_weight"] == 4.0
    validations = [e for e in got if e["event"] == "validation"]
    assert all(0 < e["teacher_loss"] < 4 for e in validations) and "teacher_loss" in metrics["history"][0]
    assert [e for e in got if e["event"] == "teacher_features"][-1]["done"] == 40
    assert "genre_head" in meta and len(list(cache.rglob("*.npz"))) == 1


def test_resume_continues_from_last_ckpt(head_run, train_manifest, tmp_path):
    first, _, _, cache = head_run
    got = []
    opts = TrainOptions(manifest=str(train_manifest), out=str(tmp_path / "resumed"), resume=str(first / "last.ckpt"),
                        epochs=3, workers=0, progress_interval=0, cache_dir=str(cache))  # fmt: skip
    out = train(opts, emit=lambda event, **f: got.append({"event": event, **f}), log=lambda m: None)
    meta, metrics = check_outputs(out, train_manifest, 32)
    assert [e["epoch"] for e in got if e["event"] == "epoch_start"] == [3]  # epochs 1-2 are not redone
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]  # the best-epoch record survived the resume
    assert meta["mode"] == "head" and meta["training"]["batch_size"] == 8  # the recipe comes from the checkpoint
    assert meta["training"]["resumed_from"] == str(first / "last.ckpt")
    assert torch.load(out / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 3
    opts.out, opts.epochs = str(tmp_path / "again"), 3
    with pytest.raises(TrainError, match="3 epochs already done"):
        train(TrainOptions(**{**vars(opts), "resume": str(out / "last.ckpt")}), emit=lambda *a, **k: None)


def test_sigterm_stops_cleanly_and_leaves_nothing(tmp_path, train_manifest, exported):
    out = tmp_path / "models" / "cancelled"
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "train", "--manifest", str(train_manifest), "--out", str(out),
         "--init-from", str(exported[0]), "--mode", "full", "--epochs", "100", *TINY],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in proc.stdout:
            if json.loads(line)["event"] == "progress":
                proc.send_signal(signal.SIGTERM)
                break
        rest, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert json.loads(rest.splitlines()[-1]) == {"event": "error", "message": "cancelled (SIGTERM)"}
    assert "Traceback" not in stderr
    assert list((tmp_path / "models").iterdir()) == []


def test_bad_options_are_clean_errors(tmp_path, train_manifest, capsys):
    args = ["train", "--manifest", str(train_manifest), "--out", str(tmp_path / "o")]
    assert main([*args, "--weights", "w.pth"]) == 1
    assert "--weights and --weights-sha256 go together" in capsys.readouterr().err
    assert main([*args, "--resume", str(tmp_path / "none.ckpt")]) == 1
    assert "no such checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--mode", "x"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and list(tmp_path.iterdir()) == []


def test_help_explains_the_command():
    proc = run_cli("train", "--help")
    for words in ("--mode", "--init-from", "--resume", "--proxy-lr-multiplier", "--warmup-epochs", "--grad-clip",
                  "metrics.json", "last.ckpt", "SIGTERM", '"event":"progress"', "never read"):  # fmt: skip
        assert words in proc.stdout
    assert "train" in run_cli("--help").stdout
