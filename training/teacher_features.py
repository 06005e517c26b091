"""The teacher's pooled features of every poster of a manifest, computed once and cached in one .npz file.

A cache file holds, for one input configuration (``TeacherFeatureSpec`` less its layers: input size and
range, pooling, precision) and one copy of the teacher's weights (the SHA-256 of nsfwjs's model files),
each poster's features at every layer asked of it so far, keyed by poster id and the SHA-256 of the image
file read: a poster whose picture changed, or a new poster, is computed again; the others are reused,
whatever manifest or data directory names them. Unaugmented, eval mode, stored as float32.

The .npz holds ``ids`` [N] (str), ``image_sha256`` [N] (str), one ``features/<layer>`` [N, C] float32
per layer, and ``meta`` (a JSON string: the spec, the weights digest, the nsfwjs version).

Training gets a batch's features with ``teacher_features(records, spec)`` (computes what is missing)
and ``TeacherFeatures.take(ids, layer)`` or ``TeacherFeatures.matrix(layer)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .data import load_pixels, quiet_worker
from .features import default_cache_dir
from .manifest import Record, image_source
from .nsfwjs_files import NSFWJS_VERSION, model_files_sha256
from .preprocess import normalise
from .teacher import POOLINGS, Teacher, feature_spec, load_teacher, resolve_precision

FORMAT = "marquee-teacher-features/1"
ProgressFn = Callable[[int, int, float], None]  # done, total, images per second


@dataclass(frozen=True)
class TeacherFeatureSpec:
    layers: tuple[str, ...] = ("mixed5",)
    pooling: str = "avg"
    width: int = 200  # the posters' own shape and about their size (mostly 203x300): no stretching, little resampling
    height: int = 300
    input_range: str = "keras"  # [-1, 1], what the ImageNet layers (mixed0..mixed5) were trained on
    precision: str = "auto"  # "32", "bf16", or auto (bf16 where the CPU has bf16 kernels); caches name the resolved one

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("at least one layer")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        feature_spec(self.width, self.height, self.input_range)  # validates size and range
        resolve_precision(self.precision)


@dataclass
class TeacherFeatures:
    ids: list[str]
    image_sha256: list[str]
    features: dict[str, np.ndarray]  # layer -> float32 [len(ids), C]
    meta: dict[str, Any]

    def __post_init__(self) -> None:
        self._row = {pid: i for i, pid in enumerate(self.ids)}

    def dim(self, layer: str | None = None) -> int:
        return int(self.features[self._layer(layer)].shape[1])

    def matrix(self, layer: str | None = None) -> torch.Tensor:
        """All rows, in ``ids`` order: float32 [N, C]."""
        return torch.from_numpy(self.features[self._layer(layer)])

    def take(self, ids: Sequence[str], layer: str | None = None) -> torch.Tensor:
        """The rows of these poster ids, in their order: float32 [len(ids), C]; KeyError names a missing id."""
        missing = [pid for pid in ids if pid not in self._row]
        if missing:
            raise KeyError(f"{len(missing)} poster(s) have no teacher features, first: {missing[0]!r}")
        rows = np.fromiter((self._row[pid] for pid in ids), dtype=np.int64, count=len(ids))
        return torch.from_numpy(self.features[self._layer(layer)][rows])

    def _layer(self, layer: str | None) -> str:
        if layer is None:
            if len(self.features) != 1:
                raise ValueError(f"name one of the layers {sorted(self.features)}")
            return next(iter(self.features))
        if layer not in self.features:
            raise KeyError(f"no features of layer {layer!r}; this file has {sorted(self.features)}")
        return layer


def default_cache_path(
    spec: TeacherFeatureSpec, weights_sha256: str, cache_dir: str | os.PathLike | None = None
) -> Path:
    """One file per input configuration and weights; it holds every layer asked of it so far."""
    base = Path(cache_dir) if cache_dir else default_cache_dir().parent / "teacher"
    name = f"{weights_sha256[:16]}-{spec.width}x{spec.height}-{spec.input_range}-{spec.pooling}-{spec.precision}.npz"
    return base / name


def load_teacher_features(path: str | os.PathLike) -> TeacherFeatures:
    with np.load(path, allow_pickle=False) as blob:
        meta = json.loads(str(blob["meta"]))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a teacher feature file ({meta.get('format')!r})")
        features = {
            k.split("/", 1)[1]: blob[k].astype(np.float32, copy=False) for k in blob.files if k.startswith("features/")
        }
        return TeacherFeatures(list(blob["ids"]), list(blob["image_sha256"]), features, meta)


def teacher_features(
    records: Sequence[Record],
    spec: TeacherFeatureSpec = TeacherFeatureSpec(),
    out: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    package_dir: str | os.PathLike | None = None,
    teacher: Teacher | None = None,
    batch_size: int = 32,
    workers: int = 0,
    device: torch.device | str = "cpu",
    on_progress: ProgressFn | None = None,
    save_every: int = 1024,
) -> tuple[TeacherFeatures, dict[str, Any]]:
    """The features of ``records`` (in their order) at ``spec.layers``, reading and updating the cache file
    ``out`` (default: ``default_cache_path`` under ``cache_dir``); and {"file", "hits", "computed", "seconds",
    "img_per_s"}.

    A cache file of the same input configuration and weights serves any of the layers it holds; asking
    for a layer it lacks computes every poster again, for its layers and the new ones (one pass). The file
    is rewritten every ``save_every`` computed posters, so a stopped run keeps what it computed."""
    spec = replace(spec, layers=tuple(spec.layers), precision=resolve_precision(spec.precision, device))
    weights_sha = model_files_sha256(package_dir)
    path = Path(out) if out else default_cache_path(spec, weights_sha, cache_dir)
    stored, stored_layers = _read_matching(path, _meta(spec, weights_sha))
    if not set(spec.layers) <= set(stored_layers):
        stored, stored_layers = {}, tuple(dict.fromkeys((*stored_layers, *spec.layers)))
    full = replace(spec, layers=stored_layers)  # what the file holds, and what a computation produces
    sources = [image_source(r, spec.width, spec.height) for r in records]
    digests = [_file_sha256(s) for s in sources]
    missing = [i for i, r in enumerate(records) if stored.get(r.id, (None,))[0] != digests[i]]
    t0 = time.monotonic()
    if missing:
        model = (teacher or load_teacher(package_dir)).to(device)
        unsaved = 0
        batches = _compute(model, [sources[i] for i in missing], full, batch_size, workers, on_progress)
        for positions, computed in batches:
            for j, pos in enumerate(positions):
                i = missing[pos]
                stored[records[i].id] = (digests[i], {layer: computed[layer][j] for layer in full.layers})
            unsaved += len(positions)
            if unsaved >= save_every:
                _save(path, stored, full.layers, _meta(full, weights_sha))
                unsaved = 0
        _save(path, stored, full.layers, _meta(full, weights_sha))
    elif on_progress:
        on_progress(len(records), len(records), 0.0)
    seconds = time.monotonic() - t0
    ids = [r.id for r in records]
    table = TeacherFeatures(
        ids,
        digests,
        {layer: np.stack([stored[pid][1][layer] for pid in ids]) for layer in spec.layers} if ids else {},
        _meta(spec, weights_sha),
    )
    info = {
        "file": str(path),
        "hits": len(records) - len(missing),
        "computed": len(missing),
        "seconds": round(seconds, 1),
        "img_per_s": round(len(missing) / seconds, 2) if missing and seconds > 0 else None,
    }
    return table, info


def _meta(spec: TeacherFeatureSpec, weights_sha256: str) -> dict[str, Any]:
    meta = {"format": FORMAT, "spec": asdict(spec), "weights_sha256": weights_sha256, "nsfwjs": NSFWJS_VERSION}
    return json.loads(json.dumps(meta))  # as a cache file's meta reads back (tuples become lists)


Stored = dict[str, tuple[str, dict[str, np.ndarray]]]  # id -> (image sha256, {layer: features})


def _read_matching(path: Path, meta: dict[str, Any]) -> tuple[Stored, tuple[str, ...]]:
    """id -> (image sha256, {layer: features}), and the layers, of a cache file of the same input
    configuration and weights (any layers); else nothing."""
    if not path.is_file():
        return {}, ()
    try:
        table = load_teacher_features(path)
    except Exception:  # noqa: BLE001 - a corrupt cache file is recomputed, never trusted
        return {}, ()
    if _without_layers(table.meta) != _without_layers(meta):
        return {}, ()
    stored = {
        pid: (sha, {layer: f[i] for layer, f in table.features.items()})
        for i, (pid, sha) in enumerate(zip(table.ids, table.image_sha256))
    }
    return stored, tuple(table.meta["spec"]["layers"])


def _without_layers(meta: dict[str, Any]) -> dict[str, Any]:
    return {**meta, "spec": {k: v for k, v in meta.get("spec", {}).items() if k != "layers"}}


class _Images(Dataset):
    def __init__(self, sources: Sequence[str], preprocessing: dict[str, Any]):
        self.sources, self.spec = list(sources), preprocessing

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> torch.Tensor:
        return normalise(load_pixels(self.sources[i], self.spec), self.spec["mean"], self.spec["std"])


@torch.no_grad()
def _compute(
    teacher: Teacher, sources: Sequence[str], spec: TeacherFeatureSpec, batch_size: int, workers: int, on_progress
) -> Iterator[tuple[range, dict[str, np.ndarray]]]:
    """Per batch: the positions in ``sources`` and {layer: float32 [batch, C]}."""
    data = _Images(sources, feature_spec(spec.width, spec.height, spec.input_range))
    loader = DataLoader(data, batch_size=batch_size, num_workers=workers, worker_init_fn=quiet_worker)
    done, t0 = 0, time.monotonic()
    for images in loader:
        pooled = teacher.pooled(images, spec.layers, spec.pooling, spec.precision)
        yield range(done, done + len(images)), {layer: f.cpu().numpy() for layer, f in pooled.items()}
        done += len(images)
        if on_progress:
            on_progress(done, len(data), done / max(time.monotonic() - t0, 1e-9))


def _file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _save(path: Path, stored, layers: Sequence[str], meta: dict[str, Any]) -> None:
    ids = sorted(stored)
    arrays: dict[str, np.ndarray] = {
        "ids": np.array(ids, dtype=str),
        "image_sha256": np.array([stored[pid][0] for pid in ids], dtype=str),
        "meta": np.array(json.dumps(meta, sort_keys=True)),
    }
    for layer in layers:
        arrays[f"features/{layer}"] = np.stack([stored[pid][1][layer] for pid in ids]).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
