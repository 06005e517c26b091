"""Training throughput (images per second) of `python -m training train`, per mode, on this machine.

Runs the real command on a catalog subset and reads its JSON progress lines:
  head: backbone feature extraction (once per backbone and input size; cached afterwards)
        and head training on the cached features;
  full: warm-up epoch (backbone frozen: forward through the backbone, backward through the head)
        and full epoch (forward + backward + AdamW over the whole network, augmentation on).
A step's rate is images / wall time between progress lines; the first step of each epoch (one-off
set-up) is left out and the median is reported.

    .venv/bin/python bench/training_throughput.py [--width 160 --height 240] [--out bench/results/training-cpu.md]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_manifest(catalog: Path, path: Path, n_train: int, n_val: int) -> None:
    """The first posters by id of train and val (test is left out: training never reads it)."""
    want = {"train": n_train, "val": n_val}
    with open(catalog / "movies.csv", encoding="utf-8", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["id"])
    lines = []
    for r in rows:
        if want.get(r["split"], 0) > 0:
            want[r["split"]] -= 1
            lines.append(json.dumps({"id": r["id"], "path": str(catalog / r["file"]), "genres": r["genres"].split("|"),
                                     "single_genre": r["single_genre"], "split": r["split"]}))  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_train(args: list[str]) -> tuple[list[dict], float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "training", "train", *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines()], time.monotonic() - t0


def step_rates(events: list[dict], epoch: int) -> list[float]:
    steps = [e for e in events if e["event"] == "progress" and e["epoch"] == epoch]
    return [e["img_per_s"] for e in steps if e["step"] > 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalog", default=os.environ.get("MARQUEE_CATALOG") or str(REPO.parent / "shared" / "posters"))
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train", type=int, default=160, help="train posters in the subset")
    p.add_argument("--val", type=int, default=32, help="val posters in the subset")
    p.add_argument("--full-steps", type=int, default=6, help="training steps per full-mode epoch")
    p.add_argument("--head-epochs", type=int, default=30)
    p.add_argument("--out", help="also write the table (markdown) here")
    a = p.parse_args()

    import torch

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="marquee-bench-") as tmp:
        tmp = Path(tmp)
        manifest = tmp / "manifest.jsonl"
        write_manifest(Path(a.catalog), manifest, a.train, a.val)
        common = ["--manifest", str(manifest), "--width", str(a.width), "--height", str(a.height),
                  "--batch-size", str(a.batch_size), "--progress-interval", "0", "--calibrate", "64"]  # fmt: skip

        head, head_s = run_train([*common, "--out", str(tmp / "head"), "--mode", "head",
                                  "--epochs", str(a.head_epochs), "--cache-dir", str(tmp / "cache")])  # fmt: skip
        feats = [e for e in head if e["event"] == "features" and e["done"] == e["total"]]
        feature_rate = sum(e["total"] for e in feats) / sum(e["total"] / e["img_per_s"] for e in feats)
        head_rates = [r for epoch in range(1, a.head_epochs + 1) for r in step_rates(head, epoch)]

        full, full_s = run_train([*common, "--out", str(tmp / "full"), "--mode", "full", "--epochs", "2",
                                  "--warmup-epochs", "1", "--limit-batches", str(a.full_steps)])  # fmt: skip
        warmup_rates, full_rates = step_rates(full, 1), step_rates(full, 2)
    load_after = os.getloadavg()

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_epoch = lambda rate: 5756 / rate  # noqa: E731 - the catalog's train split
    rows = [
        ("head: feature extraction (once, eval forward)", feature_rate, f"{(5756 + 721) / feature_rate / 60:.0f} min for train+val, then cached"),
        ("head: training on cached features", statistics.median(head_rates), f"{per_epoch(statistics.median(head_rates)):.0f} s"),
        ("full: warm-up epoch (backbone frozen)", statistics.median(warmup_rates), f"{per_epoch(statistics.median(warmup_rates)) / 60:.0f} min"),
        ("full: training (whole network)", statistics.median(full_rates), f"{per_epoch(statistics.median(full_rates)) / 60:.0f} min"),
    ]  # fmt: skip
    lines = [
        f"# Training throughput on CPU ({a.width}x{a.height}, batch {a.batch_size})",
        "",
        f"- Machine: {cpu_model()}, {cpus} cores available, {platform.machine()}, Linux {platform.release()}",
        f"- torch {torch.__version__.split('+')[0]} ({torch.get_num_threads()} threads), "
        f"python {platform.python_version()}; float32 (bf16 autocast applies on CUDA only)",
        f"- Subset: {a.train} train + {a.val} val posters, random init (BatchNorm calibrated on 64);"
        f" load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} (other work shares this machine)",
        f"- Wall time of the two runs (incl. start-up, validation, ONNX export): head {head_s:.0f} s, full {full_s:.0f} s",
        "",
        "| mode: phase | img/s (median of steps) | one train epoch (5,756 posters) |",
        "|---|---:|---:|",
        *[f"| {name} | {rate:.1f} | {epoch} |" for name, rate, epoch in rows],
        "",
        f"Steps measured: head {len(head_rates)}, full warm-up {len(warmup_rates)}, full {len(full_rates)}"
        f" (first step of each epoch excluded). Validation (val queries vs train gallery) is extra: in full mode it"
        f" embeds the {5756 + 721} train+val posters at the feature-extraction rate every epoch.",
    ]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
