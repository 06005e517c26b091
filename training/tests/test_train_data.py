import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from training.data import MemoryPosters, PosterDataset, class_names, label_targets, split_records, unknown_labels
from training.features import cached_features, module_sha256
from training.manifest import parse_lines, read_manifest
from training.model import build_model
from training.pixels import BatchAugment, load_uint8, normalise_batch
from training.preprocess import default_spec, load_image, normalise

from .conftest import SMALL_H, SMALL_W, manifest_record


def test_label_mapping_is_sorted_train_labels_whatever_the_manifest_order(train_manifest):
    records = read_manifest(train_manifest)
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    train = split_records(records, "train")
    assert split_records(shuffled, "train") == train
    single = class_names(train, "single_genre")
    assert single == sorted({r.single_genre for r in records if r.split == "train"})
    assert class_names(split_records(shuffled, "train"), "single_genre") == single
    targets = label_targets(train, single, "single_genre")
    assert targets.dtype == torch.float32 and (targets.sum(dim=1) == 1).all()
    assert [single[i] for i in targets.argmax(dim=1)] == [r.single_genre for r in train]
    unknown = {"id": "x", "path": "/x.jpg", "genres": ["News"], "single_genre": "News", "split": "val"}
    assert label_targets(parse_lines([json.dumps(unknown)]), single, "single_genre").sum() == 0  # no proxy for it
    assert unknown_labels(parse_lines([json.dumps(unknown)]), single, "single_genre") == {"News"}


def test_genre_labels_are_multi_hot_over_every_genre_of_the_train_split(train_manifest):
    train = split_records(read_manifest(train_manifest), "train")
    classes = class_names(train)  # default: genres
    assert classes == sorted({g for r in train for g in r.genres})
    assert set(class_names(train, "single_genre")) < set(classes)
    targets = label_targets(train, classes)
    for row, r in zip(targets, train):
        assert {classes[i] for i in row.nonzero().flatten().tolist()} == set(r.genres)
    assert targets.sum() > len(train)  # posters have more than one genre


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
    ds = PosterDataset(records, spec, torch.zeros(len(records), 4))
    for i, png in enumerate(pngs):
        x, label, pos = ds[i]
        want = normalise(Image.open(png).convert("RGB"), spec["mean"], spec["std"])
        assert x.dtype == torch.float32 and x.shape == (3, SMALL_H, SMALL_W)
        assert x.numpy().tobytes() == want.numpy().tobytes()
        assert not torch.equal(x, load_image(records[i].path, spec))  # not a resize of the original
        assert pos == i and label.tolist() == [0.0] * 4


def test_rendered_inputs_of_another_size_are_ignored(rendered):
    records, _ = rendered
    spec = default_spec(32, 48)
    ds = PosterDataset(records, spec, torch.zeros(len(records), 4))
    assert ds.source(0) == records[0].path
    assert torch.equal(ds[0][0], load_image(records[0].path, spec))


def test_memory_posters_hold_the_rendered_pixels_and_normalise_to_the_datasets_tensors(rendered):
    records, _ = rendered
    spec = default_spec(SMALL_W, SMALL_H)
    labels = torch.zeros(len(records), 4)
    pixels = load_uint8(records, spec)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 3, SMALL_H, SMALL_W)
    memory, disk = MemoryPosters(pixels, labels), PosterDataset(records, spec, labels)
    for i in range(3):
        assert torch.allclose(normalise_batch(memory[i][0][None], spec)[0], disk[i][0], atol=1e-6)


def test_batch_augment_crops_flips_and_resizes_without_touching_colour():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 96, 64)
    augment = BatchAugment(32, 48, (0.35, 1.0), seed=1)
    out = augment(x)
    assert out.shape == (6, 3, 48, 32) and out.dtype == torch.float32
    assert not torch.equal(out, augment(x))  # new crops every call
    again = BatchAugment(32, 48, (0.35, 1.0), seed=1)(x)
    assert torch.equal(out, again)  # seeded
    # a flat colour stays that colour: crops and flips only move pixels
    flat = torch.full((2, 3, 96, 64), 0.25)
    assert torch.allclose(augment(flat), torch.full((2, 3, 48, 32), 0.25), atol=1e-6)
    with pytest.raises(ValueError, match="crop scale"):
        BatchAugment(32, 48, (0.0, 1.0))


def test_training_pipeline_holds_posters_in_memory_and_splits_them_right(train_manifest):
    from training.module import ProxyAnchorModule
    from training.recipes import resolve_recipe
    from training.train import _Data, _datasets, _train_transform

    records = read_manifest(train_manifest)
    train, val = split_records(records, "train"), split_records(records, "val")
    classes = class_names(train)
    spec = default_spec(SMALL_W, SMALL_H)
    hp = resolve_recipe("cpu", {})[0]
    module = ProxyAnchorModule(build_model(8), len(classes), hp)
    data = _Data(spec, train, val, label_targets(train, classes), label_targets(val, classes), 0, False)
    ds = _datasets(hp, module, data, "auto", None, lambda *a, **k: None, lambda m: None)
    assert isinstance(ds["train"], MemoryPosters) and ds["gallery"] is ds["train"]
    assert len(ds["val"]) == len(val) and len(ds["train"]) == len(train)
    assert isinstance(_train_transform(hp, spec), BatchAugment)
    assert _train_transform({**hp, "mode": "head"}, spec) is None
    disk = _datasets(hp, module, data, "disk", None, lambda *a, **k: None, lambda m: None)
    assert isinstance(disk["train"], PosterDataset) and [r.split for r in disk["gallery"].records] == ["train"] * len(train)
    assert {r.split for r in disk["val"].records} == {"val"}


def test_feature_cache_is_keyed_by_backbone_and_size(tmp_path, rendered):
    records, _ = rendered
    labels = torch.zeros(len(records), 4)
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
