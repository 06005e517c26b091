"""Which layer of the pretrained teacher to distil: a linear probe and the k-NN vote on its pooled features.

    nice .venv/bin/python bench/teacher_layers.py --write docs/evaluation/teacher-layers

For each input configuration (size, input range, pooling) the teacher's (nsfwjs's InceptionV3, read
from node_modules/nsfwjs) pooled features of all catalog posters are computed once through the training
package's cache (``training.teacher_features``, the same code as ``python -m training teacher-features``)
and, for each candidate layer:

* the k-NN genre vote (the server's: k nearest train posters by cosine, each votes for its genres with
  weight (1 + cosine)/2): mAP over genres at k=5 and mean per-genre ROC AUC at k=10 (training.vote);
* a linear head: one logistic regression per genre (all the poster's ``genres``, multi-label) on the
  train split's standardised features, L2 strength chosen on val mAP from a small grid; mAP and mean AUC
  of its scores.

Queries are val (the choice) and test (reported, never used to choose); the gallery and the probe's
training set are train. Writes PREFIX.json (every figure) and PREFIX.md (the tables).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.manifest import Record  # noqa: E402
from training.teacher_features import TeacherFeatureSpec, teacher_features  # noqa: E402
from training.vote import multi_hot, vote_metrics, vote_scores  # noqa: E402

LAYERS = ("mixed2", "mixed3", "mixed4", "mixed5")
L2_GRID = (1.0, 0.3, 0.1, 0.03, 0.01, 1e-3)  # strongest first: each fit starts from the previous one's solution
# (name, width, height, input range, pooling, layers): the main sweep first, then one change at a time.
CONFIGS = (
    ("200x300 [-1,1] avg", 200, 300, "keras", "avg", LAYERS),
    ("150x225 [-1,1] avg", 150, 225, "keras", "avg", LAYERS),
    ("200x300 [0,1] avg", 200, 300, "nsfwjs", "avg", LAYERS),
    ("200x300 [-1,1] max", 200, 300, "keras", "max", LAYERS),
    ("299x299 [-1,1] avg", 299, 299, "keras", "avg", LAYERS),
)


def records(catalog: Path) -> list[Record]:
    with open(catalog / "movies.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [
        Record(r["id"], str((catalog / r["file"]).resolve()), tuple(r["genres"].split("|")), r["single_genre"],
               r["split"])  # fmt: skip
        for r in rows
    ]


def fit_linear(
    x: torch.Tensor, y: torch.Tensor, l2: float, start: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-genre logistic regression, all genres at once (independent columns): mean BCE + l2/2 |w|^2, L-BFGS."""
    x, y = x.double(), y.double()
    w0, b0 = start or (torch.zeros(x.shape[1], y.shape[1]).double(), torch.zeros(y.shape[1]).double())
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=500, tolerance_grad=1e-7, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, reduction="sum") / len(x)
        loss = loss + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def evaluate_layer(f: dict[str, torch.Tensor], t: dict[str, torch.Tensor], classes: list[str]) -> dict:
    out: dict = {}
    for split in ("val", "test"):
        v5 = vote_metrics(vote_scores(f[split], f["train"], t["train"], 5), t[split], classes)
        v10 = vote_metrics(vote_scores(f[split], f["train"], t["train"], 10), t[split], classes)
        out[f"vote_{split}"] = {"map5": v5["map"], "auc10": v10["auc"]}
    mu, sd = f["train"].mean(0), f["train"].std(0).clamp(min=1e-6)
    z = {s: (f[s] - mu) / sd for s in f}
    probes, fitted, fitted_at = [], None, {}
    for l2 in L2_GRID:
        w, b = fitted = fitted_at[l2] = fit_linear(z["train"], t["train"], l2, fitted)
        scores = {s: (z[s].double() @ w + b).float() for s in ("val", "test")}
        probes.append((l2, {s: vote_metrics(scores[s], t[s], classes) for s in scores}))
    l2, best = max(probes, key=lambda p: p[1]["val"]["map"])
    w, b = fitted_at[l2]
    out["linear_scores"] = {s: (z[s].double() @ w + b).float().numpy() for s in ("val", "test")}
    out["linear_l2_grid"] = {str(l2_): {"val_map": m["val"]["map"], "val_auc": m["val"]["auc"]} for l2_, m in probes}
    out["linear_l2"] = l2
    for split in ("val", "test"):
        out[f"linear_{split}"] = {"map": best[split]["map"], "auc": best[split]["auc"]}
        out[f"linear_{split}_per_genre"] = best[split]["per_genre"]
    return out


def bootstrap_maps(scores: list[np.ndarray], targets: np.ndarray, n: int = 1000, seed: int = 0) -> np.ndarray:
    """[len(scores), n] macro AP over genres of each score matrix [Q, C] on the same n resamples of the queries
    (with replacement: paired across systems). A genre counts in a resample when it has a positive and a
    negative there; a query drawn m times weighs m (tied with itself, as scikit-learn groups ties)."""
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(targets), np.full(len(targets), 1 / len(targets)), size=n).astype(np.float64)
    pos = targets > 0
    out = np.zeros((len(scores), n))
    for r, s in enumerate(scores):
        aps = np.full((n, s.shape[1]), np.nan)
        for c in range(s.shape[1]):
            if not 0 < pos[:, c].sum() < len(pos):
                continue
            order = np.argsort(-s[:, c], kind="stable")
            w, p = weights[:, order], pos[order, c].astype(np.float64)
            ranked = s[order, c]
            # A tied group's members all get the precision at the group's end (scikit-learn's thresholds).
            group_end = np.searchsorted(-ranked, -ranked, side="right") - 1
            cum_w, cum_pos = np.cumsum(w, axis=1)[:, group_end], np.cumsum(w * p, axis=1)[:, group_end]
            total_pos = (w * p).sum(axis=1)
            valid = (total_pos > 0) & (total_pos < w.sum(axis=1))
            precision = cum_pos / np.maximum(cum_w, 1e-12)
            ap = (w * p * precision).sum(axis=1) / np.maximum(total_pos, 1e-12)
            aps[valid, c] = ap[valid]
        out[r] = np.nanmean(aps, axis=1)
    return out


def add_intervals(results: list[dict], targets: dict[str, torch.Tensor]) -> None:
    """95% paired bootstrap interval of each row's linear-probe mAP minus the best val row's (the same resampled
    queries for every row; an interval of mAP itself would mislead: resampling biases AP upward)."""
    best = max(range(len(results)), key=lambda i: results[i]["linear_val"]["map"])
    for split in ("val", "test"):
        maps = bootstrap_maps([r["linear_scores"][split] for r in results], targets[split].numpy())
        for r, m in zip(results, maps):
            diff = m - maps[best]
            r[f"linear_{split}"]["minus_best_val_row_ci95"] = [round(float(v), 4) for v in np.percentile(diff, [2.5, 97.5])]


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--catalog", default=str(Path(__file__).resolve().parents[2] / "shared" / "posters"))
    p.add_argument("--cache-dir", help="teacher feature caches (default: $MARQUEE_CACHE/teacher)")
    p.add_argument("--configs", help="comma-separated indices into CONFIGS (default: all)")
    p.add_argument("--precision", default="auto", choices=["auto", "32", "bf16"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=1, help="decoding processes beside the teacher")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for the teacher (1: on a 2-core machine shared with other work, 2 threads "
                   "spend their time at barriers); the probes always run on one")  # fmt: skip
    p.add_argument("--limit", type=int, default=0, help="only the first N posters of each split (a smoke test)")
    p.add_argument("--write", metavar="PREFIX", help="write PREFIX.json and PREFIX.md")
    a = p.parse_args()
    recs = records(Path(a.catalog))
    split = {s: sorted((r for r in recs if r.split == s), key=lambda r: r.id) for s in ("train", "val", "test")}
    if a.limit:
        split = {s: rs[: a.limit] for s, rs in split.items()}
    ordered = split["train"] + split["val"] + split["test"]
    classes = sorted({g for r in split["train"] for g in r.genres})
    targets = {s: multi_hot([r.genres for r in rs], classes) for s, rs in split.items()}
    chosen = [CONFIGS[int(i)] for i in a.configs.split(",")] if a.configs else list(CONFIGS)
    results = []
    for name, width, height, input_range, pooling, layers in chosen:
        spec = TeacherFeatureSpec(layers, pooling, width, height, input_range, a.precision)
        t0 = time.monotonic()
        torch.set_num_threads(a.threads)
        table, info = teacher_features(ordered, spec, cache_dir=a.cache_dir, batch_size=a.batch_size,
                                       workers=a.workers, on_progress=_progress(name))  # fmt: skip
        print(f"{name}: {json.dumps(info)}", file=sys.stderr, flush=True)
        torch.set_num_threads(1)  # small L-BFGS steps: more threads only add barrier waits
        for layer in layers:
            feats = {s: table.take([r.id for r in rs], layer) for s, rs in split.items()}
            te = time.monotonic()
            row = {"config": name, "width": width, "height": height, "input_range": input_range, "pooling": pooling,
                   "layer": layer, "dim": table.dim(layer), "precision": table.meta["spec"]["precision"],
                   "features": info, "features_wall_s": round(time.monotonic() - t0, 1)}  # fmt: skip
            row.update(evaluate_layer(feats, targets, classes))
            row["eval_s"] = round(time.monotonic() - te, 1)
            results.append(row)
            print(json.dumps({k: v for k, v in row.items() if "per_genre" not in k and k != "linear_scores"}),
                  flush=True)  # fmt: skip
            if a.write:  # after every layer: a long run stopped early keeps what it measured
                add_intervals(results, targets)
                write(a.write, results, classes, split)


def write(prefix: str, results: list[dict], classes: list[str], split: dict) -> None:
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
               "load_avg_1m_at_write": round(os.getloadavg()[0], 2)}  # fmt: skip
    rows = [{k: v for k, v in r.items() if k != "linear_scores"} for r in results]
    blob = {"machine": machine, "classes": classes, "l2_grid": list(L2_GRID), "results": rows,
            "splits": {s: len(rs) for s, rs in split.items()}}  # fmt: skip
    Path(f"{prefix}.json").write_text(json.dumps(blob, indent=1) + "\n", encoding="utf-8")
    Path(f"{prefix}.md").write_text(markdown(blob), encoding="utf-8")


def _progress(name: str):
    last = [0.0]

    def report(done: int, total: int, rate: float) -> None:
        if done == total or time.monotonic() - last[0] > 30:
            last[0] = time.monotonic()
            print(f"{name}: {done}/{total} posters, {rate:.1f} img/s", file=sys.stderr, flush=True)

    return report


def markdown(blob: dict) -> str:
    """The results table (the written report's narrative lives beside it, in the .md written by hand)."""
    lines = [
        "| input | layer | dim | vote val mAP@5 / AUC@10 | linear val mAP / AUC | linear val mAP minus the best "
        "val row (95% CI) | vote test mAP@5 / AUC@10 | linear test mAP / AUC | L2 | features img/s |",
        "|---|---|---:|---|---|---|---|---|---:|---:|",
    ]
    for r in blob["results"]:
        rate = r["features"]["img_per_s"]
        val = r["linear_val"]
        diff = val.get("minus_best_val_row_ci95")
        lines.append(
            f"| {r['config']} | {r['layer']} | {r['dim']} "
            f"| {r['vote_val']['map5']:.3f} / {r['vote_val']['auc10']:.3f} "
            f"| {val['map']:.3f} / {val['auc']:.3f} "
            f"| {f'{diff[0]:+.3f} to {diff[1]:+.3f}' if diff else '–'} "
            f"| {r['vote_test']['map5']:.3f} / {r['vote_test']['auc10']:.3f} "
            f"| {r['linear_test']['map']:.3f} / {r['linear_test']['auc']:.3f} "
            f"| {r['linear_l2']:g} | {rate if rate is not None else 'cached'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
