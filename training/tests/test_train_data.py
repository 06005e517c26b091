import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from training.data import PosterDataset, class_names, label_indices, split_records, training_augment
from training.features import cached_features, module_sha256
from training.manifest import parse_lines, read_manifest
from training.model import build_model
from training.preprocess import default_spec, load_image, normalise

from .conftest import SMALL_H, SMALL_W, manifest_record


def test_label_mapping_is_sorted_train_labels_whatever_the_manifest_order(train_manifest):
    records = read_manifest(train_manifest)
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    train = split_records(records, "train")
    assert split_records(shuffled, "train") == train
    classes = class_names(train)
    assert classes == sorted({r.single_genre for r in records if r.split == "train"})
    assert class_names(split_records(shuffled, "train")) == classes
    idx = label_indices(train, classes)
    assert idx.dtype == torch.int64 and [classes[i] for i in idx] == [r.single_genre for r in train]
    unknown = {"id": "x", "path": "/x.jpg", "genres": ["News"], "single_genre": "News", "split": "val"}
    assert label_indices(parse_lines([json.dumps(unknown)]), classes).tolist() == [-1]  # no proxy for it


@pytest.fixture
def rendered(tmp_path, catalog, catalog_rows):
    """Three posters with a server-style rendered input at SMALL size. The rendered pixels are the
    preprocessed poster upside down, so reading them is distinguishable from resizing the original."""
    spec = default_spec(SMALL_W, SMALL_H)
    lines, pngs = [], []
    for row in catalog_rows[200:203]:
        rec = manifest_record(catalog, row)
        t = load_image(rec["path"], spec).numpy().transpose(1, 2, 0) * spec["std"] + spec["mean"]
        png = tmp_path / f"{row['id']}.png"
        Image.fromarray(np.rint(t * 255).clip(0, 255).astype(np.uint8)[::-1]).save(png)
        rec["input"] = {"path": str(png), "width": SMALL_W, "height": SMALL_H}
        rec["split"] = "train"
        lines.append(json.dumps(rec))
        pngs.append(png)
    return parse_lines(lines), pngs


def test_eval_inputs_are_the_rendered_pixels_byte_for_byte(rendered):
    records, pngs = rendered
    spec = default_spec(SMALL_W, SMALL_H)
    ds = PosterDataset(records, spec, torch.zeros(len(records), dtype=torch.int64))
    for i, png in enumerate(pngs):
        x, label, pos = ds[i]
        want = normalise(Image.open(png).convert("RGB"), spec["mean"], spec["std"])
        assert x.dtype == torch.float32 and x.shape == (3, SMALL_H, SMALL_W)
        assert x.numpy().tobytes() == want.numpy().tobytes()
        assert not torch.equal(x, load_image(records[i].path, spec))  # not a resize of the original
        assert pos == i and label == 0


def test_rendered_inputs_of_another_size_are_ignored(rendered):
    records, _ = rendered
    spec = default_spec(32, 48)
    ds = PosterDataset(records, spec, torch.zeros(len(records), dtype=torch.int64))
    assert ds.source(0) == records[0].path
    assert torch.equal(ds[0][0], load_image(records[0].path, spec))


def test_augmentation_changes_training_inputs_only(rendered):
    records, _ = rendered
    spec = default_spec(SMALL_W, SMALL_H)
    labels = torch.zeros(len(records), dtype=torch.int64)
    plain = PosterDataset(records, spec, labels)
    augmented = PosterDataset(records, spec, labels, training_augment(SMALL_W, SMALL_H, 0.7))
    torch.manual_seed(0)
    draws = [augmented[0][0] for _ in range(4)]
    assert all(d.shape == plain[0][0].shape and d.dtype == torch.float32 for d in draws)
    assert any(not torch.equal(d, plain[0][0]) for d in draws)
    assert torch.equal(plain[0][0], plain[0][0])  # eval is deterministic


def test_training_pipeline_augments_the_train_loader_only(train_manifest):
    from training.module import ProxyAnchorModule
    from training.train import RECIPE_KEYS, TrainOptions, _Data, _datasets

    records = read_manifest(train_manifest)
    train, val = split_records(records, "train"), split_records(records, "val")
    classes = class_names(train)
    spec = default_spec(SMALL_W, SMALL_H)
    opts = TrainOptions(manifest=str(train_manifest), out="unused")
    hp = {k: getattr(opts, k) for k in RECIPE_KEYS}
    module = ProxyAnchorModule(build_model(8), len(classes), hp)
    data = _Data(spec, train, val, label_indices(train, classes), label_indices(val, classes), 0, False)
    ds = _datasets(hp, module, data, None, lambda *a, **k: None, lambda m: None)
    assert ds["train"].augment is not None
    assert ds["val"].augment is None and ds["gallery"].augment is None and ds["verify"].augment is None
    assert [r.split for r in ds["gallery"].records] == ["train"] * len(train)
    assert {r.split for r in ds["val"].records} == {"val"}


def test_feature_cache_is_keyed_by_backbone_and_size(tmp_path, rendered):
    records, _ = rendered
    labels = torch.zeros(len(records), dtype=torch.int64)
    net = build_model(8, seed=0).eval()
    ds = PosterDataset(records, default_spec(SMALL_W, SMALL_H), labels)
    first, info = cached_features(net.backbone, ds, tmp_path)
    assert first.shape == (3, 2048) and info["computed"] == 3 and info["hits"] == 0
    again, info2 = cached_features(net.backbone, ds, tmp_path)
    assert info2["hits"] == 3 and info2["computed"] == 0 and torch.equal(first, again)
    with torch.no_grad():
        assert torch.allclose(first, net.backbone(torch.stack([ds[i][0] for i in range(3)])), atol=1e-5)
    other = build_model(8, seed=1).eval()
    assert module_sha256(other.backbone) != info["backbone_sha256"]
    assert cached_features(other.backbone, ds, tmp_path)[1]["computed"] == 3
    smaller = PosterDataset(records, default_spec(32, 48), labels)
    assert cached_features(net.backbone, smaller, tmp_path)[1]["computed"] == 3
    assert len(list(tmp_path.glob("*.pt"))) == 3
    with pytest.raises(ValueError, match="unaugmented"):
        cached_features(net.backbone, PosterDataset(records, ds.spec, labels, training_augment(64, 96)), tmp_path)
