"""Shared fixtures: the poster catalogue, a small manifest, and one exported base model."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL_W, SMALL_H = 64, 96  # small inputs keep the suite fast
SPLIT_SIZES = {"train": 40, "val": 4, "test": 4}


@pytest.fixture(scope="session")
def catalog() -> Path:
    root = Path(os.environ.get("MARQUEE_CATALOG") or REPO.parent / "shared" / "posters")
    if not (root / "movies.csv").is_file():
        pytest.fail(f"poster catalogue not found at {root} (set MARQUEE_CATALOG)")
    return root


@pytest.fixture(scope="session")
def catalog_rows(catalog) -> list[dict]:
    with open(catalog / "movies.csv", encoding="utf-8", newline="") as f:
        return sorted(csv.DictReader(f), key=lambda r: r["id"])


def manifest_record(catalog: Path, row: dict) -> dict:
    return {
        "id": row["id"],
        "path": str(catalog / row["file"]),
        "genres": row["genres"].split("|"),
        "single_genre": row["single_genre"],
        "split": row["split"],
    }


@pytest.fixture(scope="session")
def small_manifest(tmp_path_factory, catalog, catalog_rows) -> Path:
    """A manifest with a few posters per split (the same ones on every run)."""
    want = dict(SPLIT_SIZES)
    lines = []
    for row in catalog_rows:
        if want.get(row["split"], 0) > 0:
            want[row["split"]] -= 1
            lines.append(json.dumps(manifest_record(catalog, row)))
    path = tmp_path_factory.mktemp("manifest") / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "training", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"python -m training {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def exported(tmp_path_factory, small_manifest):
    """One base model exported through the real CLI: (model dir, parsed stdout events)."""
    out = tmp_path_factory.mktemp("export") / "base"
    proc = run_cli(
        "export-base", "--manifest", str(small_manifest), "--out", str(out),
        "--width", str(SMALL_W), "--height", str(SMALL_H), "--embedding-dim", "32",
        "--seed", "0", "--calibrate", "16", "--batch-size", "8",
    )  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    return out, events


@pytest.fixture(scope="session")
def poster_paths(catalog, catalog_rows) -> list[str]:
    return [str(catalog / r["file"]) for r in catalog_rows[100:106]]


@pytest.fixture(scope="session")
def train_manifest(tmp_path_factory, catalog, catalog_rows) -> Path:
    """40 train and 8 val posters; the 4 test records point at files that do not exist (never read)."""
    want = {"train": 40, "val": 8, "test": 4}
    lines = []
    for row in catalog_rows:
        if want[row["split"]] > 0:
            want[row["split"]] -= 1
            rec = manifest_record(catalog, row)
            if row["split"] == "test":
                rec["path"] = f"/nonexistent/{row['id']}.jpg"
                rec["input"] = {"path": f"/nonexistent/{row['id']}.png", "width": SMALL_W, "height": SMALL_H}
            lines.append(json.dumps(rec))
    path = tmp_path_factory.mktemp("train-manifest") / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
