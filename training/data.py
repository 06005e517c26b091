"""Training data: the labels (multi-hot targets) and the poster datasets.

A poster's label is every one of its genres (``genres``, the default) or the first one only
(``single_genre``, the metric-learning literature's); either way a target is a multi-hot row over
the train split's classes, so one loss serves both.

Both datasets read the pixels serving sees (the server-rendered input named by the manifest when
its size matches the model's, else the original poster through the same preprocessing).
``PosterDataset`` decodes on every access; ``MemoryPosters`` holds the decoded uint8 pixels in
memory. Either way augmentation happens later, per batch (training.pixels.BatchAugment).
"""

from __future__ import annotations

import signal
from typing import Any, Mapping, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from .lifetime import die_with_main
from .manifest import Record, image_source
from .preprocess import normalise, open_image, resize_fill, to_srgb8, validate_spec

LABEL_FIELDS = ("genres", "single_genre")


def split_records(records: Sequence[Record], split: str) -> list[Record]:
    """One split's records in id order, so every derived ordering is independent of the manifest's."""
    return sorted((r for r in records if r.split == split), key=lambda r: r.id)


def labels_of(record: Record, field: str = "genres") -> tuple[str, ...]:
    if field not in LABEL_FIELDS:
        raise ValueError(f"unsupported label field {field!r}; expected one of {list(LABEL_FIELDS)}")
    return record.genres if field == "genres" and record.genres else (record.single_genre,)


def class_names(train: Sequence[Record], field: str = "genres") -> list[str]:
    """The classes (one proxy each): the sorted labels of the train split."""
    return sorted({label for r in train for label in labels_of(r, field)})


def label_targets(records: Sequence[Record], classes: Sequence[str], field: str = "genres") -> torch.Tensor:
    """float32 [N, C] multi-hot targets; a label with no proxy (possible only outside train) is left out."""
    index = {c: i for i, c in enumerate(classes)}
    out = torch.zeros(len(records), len(classes), dtype=torch.float32)
    for row, r in enumerate(records):
        for label in labels_of(r, field):
            if label in index:
                out[row, index[label]] = 1.0
    return out


def unknown_labels(records: Sequence[Record], classes: Sequence[str], field: str = "genres") -> set[str]:
    known = set(classes)
    return {label for r in records for label in labels_of(r, field) if label not in known}


def load_pixels(source: str, spec: Mapping[str, Any]) -> Image.Image:
    """8-bit RGB at the model's input size; a rendered input of that size passes through unchanged."""
    img = to_srgb8(open_image(source), spec["background"])
    return resize_fill(img, spec["width"], spec["height"])


class PosterDataset(Dataset):
    """Items: (image [3,H,W] float32, target row, position in ``records``)."""

    def __init__(
        self,
        records: Sequence[Record],
        spec: Mapping[str, Any],
        labels: torch.Tensor,
    ):
        if len(labels) != len(records):
            raise ValueError(f"{len(labels)} labels for {len(records)} records")
        self.records = list(records)
        self.spec = validate_spec(spec)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.records)

    def source(self, i: int) -> str:
        return image_source(self.records[i], self.spec["width"], self.spec["height"])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        img = load_pixels(self.source(i), self.spec)
        return normalise(img, self.spec["mean"], self.spec["std"]), self.labels[i], i


class MemoryPosters(Dataset):
    """Items: (image [3,H,W] uint8, target row, position), from pixels decoded once (training.pixels.load_uint8)."""

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor):
        if len(labels) != len(pixels):
            raise ValueError(f"{len(labels)} labels for {len(pixels)} images")
        self.pixels, self.labels = pixels, labels

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.pixels[i], self.labels[i], i


def quiet_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: a worker stopped by SIGTERM (e.g. with the whole process group)
    just exits, instead of running the parent's cancellation handler it inherited by fork; and it
    dies with the training process, also when that one is killed outright."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_main()
