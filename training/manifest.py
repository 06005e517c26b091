"""Dataset manifest written by the server: JSON Lines, one poster per line.

    {"id":"tt0086425","path":"/abs/path/to/image.jpg","genres":["Comedy","Drama"],
     "single_genre":"Comedy","split":"train",
     "input":{"path":"/abs/path/to/rendered.png","width":160,"height":240}}

"input" is optional: the poster already decoded and resized by the server's own preprocessing
(sharp), stored losslessly at a model input size. When its size matches the model's, training
reads those pixels instead of resizing again, so training and serving see identical inputs.

Blank lines are ignored; unknown extra keys are allowed (forward compatible).
Every other problem raises ManifestError naming the file and 1-based line number.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from typing import Iterable, Sequence

SPLITS = ("train", "val", "test")


class ManifestError(ValueError):
    def __init__(self, source: str, line: int, message: str):
        self.source, self.line, self.message = source, line, message
        super().__init__(f"{source}:{line}: {message}")


@dataclass(frozen=True)
class Record:
    id: str
    path: str
    genres: tuple[str, ...]
    single_genre: str
    split: str
    input: tuple[str, int, int] | None = None  # (path, width, height) rendered by the server


def parse_record(obj: object) -> Record:
    """Validate one decoded JSON value; raise ValueError with a short reason."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    for key in ("id", "path", "genres", "single_genre", "split"):
        if key not in obj:
            raise ValueError(f"missing key {key!r}")
    rid, path, genres, single, split = (obj[k] for k in ("id", "path", "genres", "single_genre", "split"))
    if not isinstance(rid, str) or not rid.strip():
        raise ValueError(f"'id' must be a non-empty string, got {rid!r}")
    if not isinstance(path, str) or not path:
        raise ValueError(f"'path' must be a non-empty string, got {path!r}")
    if not os.path.isabs(path):
        raise ValueError(f"'path' must be absolute, got {path!r}")
    if not isinstance(genres, list) or not all(isinstance(g, str) and g for g in genres):
        raise ValueError(f"'genres' must be a list of non-empty strings, got {genres!r}")
    if not isinstance(single, str) or not single:
        raise ValueError(f"'single_genre' must be a non-empty string, got {single!r}")
    if genres and single not in genres:
        raise ValueError(f"'single_genre' {single!r} is not one of 'genres' {genres!r}")
    if split not in SPLITS:
        raise ValueError(f"'split' must be one of {list(SPLITS)}, got {split!r}")
    rendered = obj.get("input")
    if rendered is not None:
        if (
            not isinstance(rendered, dict)
            or not isinstance(rendered.get("path"), str)
            or not os.path.isabs(rendered["path"])
            or not all(isinstance(rendered.get(k), int) and rendered[k] > 0 for k in ("width", "height"))
        ):
            raise ValueError(f"'input' must be {{path: absolute path, width: int, height: int}}, got {rendered!r}")
        rendered = (rendered["path"], rendered["width"], rendered["height"])
    return Record(rid, path, tuple(genres), single, split, rendered)


def parse_lines(lines: Iterable[str], source: str = "<manifest>") -> list[Record]:
    records: list[Record] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(source, lineno, f"invalid JSON: {e.msg} (column {e.colno})") from None
        try:
            rec = parse_record(obj)
        except ValueError as e:
            raise ManifestError(source, lineno, str(e)) from None
        if rec.id in seen:
            raise ManifestError(source, lineno, f"duplicate id {rec.id!r} (first on line {seen[rec.id]})")
        seen[rec.id] = lineno
        records.append(rec)
    return records


def read_manifest(path: str | os.PathLike, *, check_files: bool = False) -> list[Record]:
    """Read and validate a manifest file. With check_files, every image path must exist."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            records = parse_lines(f, source)
    except UnicodeDecodeError as e:
        raise ManifestError(source, 0, f"not UTF-8: {e}") from None
    if not records:
        raise ManifestError(source, 0, "manifest has no records")
    if check_files:
        missing = [r for r in records if not os.path.isfile(r.path)]
        if missing:
            raise ManifestError(
                source, 0, f"{len(missing)} image file(s) missing, first: {missing[0].path} (id {missing[0].id})"
            )
    return records


def select(records: Sequence[Record], split: str, n: int, seed: int) -> list[Record]:
    """A seeded random sample of up to n records of one split (stable for a given manifest and seed)."""
    pool = sorted((r for r in records if r.split == split), key=lambda r: r.id)
    random.Random(seed).shuffle(pool)
    return pool[: max(0, n)]


def image_source(record: Record, width: int, height: int) -> str:
    """The file to read for a model of this input size: the server-rendered input when it fits."""
    if record.input is not None and record.input[1:] == (width, height):
        return record.input[0]
    return record.path
