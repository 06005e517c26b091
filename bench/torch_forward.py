"""PyTorch eager baseline for bench/run.ts: forward passes of the active model's checkpoint.

Loads model.pt with the training package (the same architecture and weights the ONNX file was
exported from), then times forward passes on a same-shaped random batch under
torch.inference_mode() with torch.set_num_threads(--threads). Prints one JSON object on stdout.

Optionally (--check-in/--check-out) embeds a raw float32 NCHW file so the caller can check that
PyTorch and onnxruntime compute the same function.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from training.model import load_checkpoint  # noqa: E402


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batches", default="1,8,16")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--min-reps", type=int, default=5)
    parser.add_argument("--max-reps", type=int, default=500)
    parser.add_argument("--min-seconds", type=float, default=4.0)
    parser.add_argument("--check-in", help="raw float32 NCHW input to embed once (parity check)")
    parser.add_argument("--check-out", help="where to write the embeddings of --check-in (raw float32)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.perf_counter()
    model, config = load_checkpoint(args.checkpoint)
    load_s = time.perf_counter() - started
    spec = config["preprocessing"]
    height, width = int(spec["height"]), int(spec["width"])

    if args.check_in and args.check_out:
        data = np.fromfile(args.check_in, dtype="<f4").reshape(-1, 3, height, width)
        with torch.inference_mode():
            out = model(torch.from_numpy(data.copy())).numpy().astype("<f4")
        out.tofile(args.check_out)

    results = []
    for batch in [int(b) for b in args.batches.split(",")]:
        x = torch.randn(batch, 3, height, width)
        with torch.inference_mode():
            for _ in range(args.warmup):
                model(x)
            samples: list[float] = []
            begun = time.perf_counter()
            while len(samples) < args.max_reps and (
                len(samples) < args.min_reps or time.perf_counter() - begun < args.min_seconds
            ):
                t0 = time.perf_counter()
                model(x)
                samples.append((time.perf_counter() - t0) * 1000.0)
        samples.sort()
        results.append(
            {
                "batch": batch,
                "reps": len(samples),
                "median_ms": statistics.median(samples),
                "mean_ms": statistics.fmean(samples),
                "p10_ms": percentile(samples, 0.1),
                "p90_ms": percentile(samples, 0.9),
                "min_ms": samples[0],
            }
        )

    json.dump(
        {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "input": {"width": width, "height": height},
            "load_s": load_s,
            "results": results,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
