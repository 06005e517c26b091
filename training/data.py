"""Training data: the label mapping and the poster dataset.

The dataset reads the pixels serving sees (the server-rendered input named by the manifest when
its size matches the model's, else the original poster through the same preprocessing) and,
only when built with an augmentation, alters those pixels before normalising them.
"""

from __future__ import annotations

import signal
from typing import Any, Callable, Mapping, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .manifest import Record, image_source
from .preprocess import normalise, open_image, resize_fill, to_srgb8, validate_spec

LABEL_FIELDS = ("single_genre",)

Augment = Callable[[Image.Image], Image.Image]


def split_records(records: Sequence[Record], split: str) -> list[Record]:
    """One split's records in id order, so every derived ordering is independent of the manifest's."""
    return sorted((r for r in records if r.split == split), key=lambda r: r.id)


def label_of(record: Record, field: str = "single_genre") -> str:
    if field not in LABEL_FIELDS:
        raise ValueError(f"unsupported label field {field!r}; expected one of {list(LABEL_FIELDS)}")
    return record.single_genre


def class_names(train: Sequence[Record], field: str = "single_genre") -> list[str]:
    """The classes (one proxy each): the sorted labels of the train split."""
    return sorted({label_of(r, field) for r in train})


def label_indices(records: Sequence[Record], classes: Sequence[str], field: str = "single_genre") -> torch.Tensor:
    """int64 class index per record; -1 for a label with no proxy (possible only outside train)."""
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index.get(label_of(r, field), -1) for r in records], dtype=torch.int64)


def training_augment(width: int, height: int, crop_scale: float = 0.7) -> Augment:
    """Random crop of 70-100% of the area at about the poster's aspect, resized back, and a horizontal flip."""
    aspect = width / height
    return v2.Compose(
        [
            v2.RandomResizedCrop(
                (height, width), scale=(crop_scale, 1.0), ratio=(aspect * 3 / 4, aspect * 4 / 3), antialias=True
            ),
            v2.RandomHorizontalFlip(),
        ]
    )


def load_pixels(source: str, spec: Mapping[str, Any]) -> Image.Image:
    """8-bit RGB at the model's input size; a rendered input of that size passes through unchanged."""
    img = to_srgb8(open_image(source), spec["background"])
    return resize_fill(img, spec["width"], spec["height"])


class PosterDataset(Dataset):
    """Items: (image [3,H,W] float32, class index, position in ``records``)."""

    def __init__(
        self,
        records: Sequence[Record],
        spec: Mapping[str, Any],
        labels: torch.Tensor,
        augment: Augment | None = None,
    ):
        if len(labels) != len(records):
            raise ValueError(f"{len(labels)} labels for {len(records)} records")
        self.records = list(records)
        self.spec = validate_spec(spec)
        self.labels = labels
        self.augment = augment

    def __len__(self) -> int:
        return len(self.records)

    def source(self, i: int) -> str:
        return image_source(self.records[i], self.spec["width"], self.spec["height"])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        img = load_pixels(self.source(i), self.spec)
        if self.augment is not None:
            img = self.augment(img)
        return normalise(img, self.spec["mean"], self.spec["std"]), self.labels[i], i


def quiet_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: a worker stopped by SIGTERM (e.g. with the whole process group)
    just exits, instead of running the parent's cancellation handler it inherited by fork."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
