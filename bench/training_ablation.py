"""Ablations of the CPU training recipe: one configuration per run, JSON lines out.

    .venv/bin/python bench/training_ablation.py --name r50-96 --arch resnet50 --width 96 --height 144 \
        --epochs 5 --labels genres --lr 1e-3 >> bench/results/training-ablation.jsonl

Trains from the seeded random initialisation on the catalog's train split with the training
package's own parts (multi-label proxy-anchor loss, in-memory uint8 posters, batch augmentation,
bf16 autocast + channels_last on the CPU) in a plain loop, and after the given epochs evaluates on
val (queries) against train (gallery): the genre vote's mAP (k=5, k=10) and mean AUC (k=10), and
single-genre macro Recall@1 and micro majority@5, at each --eval-size. Prints one JSON object per
evaluation. The test split is never read. Wall time counts everything from the first decode.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.losses import MultiLabelProxyAnchorLoss  # noqa: E402
from training.manifest import Record  # noqa: E402
from training.metrics import retrieval_metrics  # noqa: E402
from training.model import build_model  # noqa: E402
from training.pixels import BatchAugment, load_uint8, normalise_batch, resize_batch  # noqa: E402
from training.preprocess import default_spec  # noqa: E402
from training.vote import multi_hot, vote_metrics, vote_scores  # noqa: E402


def records(catalog: Path) -> list[Record]:
    with open(catalog / "movies.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [
        Record(r["id"], str((catalog / r["file"]).resolve()), tuple(r["genres"].split("|")), r["single_genre"], r["split"])
        for r in rows
    ]


@torch.no_grad()
def embed(net, pixels: torch.Tensor, spec, width: int, height: int, batch: int = 128) -> torch.Tensor:
    net.eval()
    out = []
    for i in range(0, len(pixels), batch):
        x = resize_batch(normalise_batch(pixels[i : i + batch], spec), width, height)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out.append(net(x.contiguous(memory_format=torch.channels_last)).float())
    return torch.cat(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--catalog", default=str(Path(__file__).resolve().parents[2] / "shared" / "posters"))
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--neck", default="none")
    p.add_argument("--head-lr", type=float, default=0, help="head (and neck) learning rate; 0: --lr")
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--height", type=int, default=144)
    p.add_argument("--store", type=int, nargs=2, default=[128, 192], help="width height the posters are held at")
    p.add_argument("--eval-size", type=int, nargs=2, action="append", help="width height; default: the train size")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--eval-every", type=int, default=0, help="also evaluate every N epochs")
    p.add_argument("--labels", choices=["genres", "single_genre"], default="genres")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--proxy-lr", type=float, default=1e-2)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--crop-scale", type=float, default=0.35)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--fp32", action="store_true")
    p.add_argument("--limit-train", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    t0 = time.monotonic()
    recs = records(Path(a.catalog))
    train = sorted((r for r in recs if r.split == "train"), key=lambda r: r.id)
    val = sorted((r for r in recs if r.split == "val"), key=lambda r: r.id)
    if a.limit_train:
        train = train[: a.limit_train]
    store = default_spec(*a.store)
    px_train, px_val = load_uint8(train, store), load_uint8(val, store)
    decode_s = time.monotonic() - t0

    label_of = (lambda r: r.genres) if a.labels == "genres" else (lambda r: (r.single_genre,))
    classes = sorted({g for r in train for g in label_of(r)})
    targets = multi_hot([label_of(r) for r in train], classes)
    vote_classes = sorted({g for r in train for g in r.genres})
    gallery_genres = multi_hot([r.genres for r in train], vote_classes)
    val_genres = multi_hot([r.genres for r in val], vote_classes)

    torch.manual_seed(a.seed)
    net = build_model(512, a.seed, a.arch, a.neck).to(memory_format=torch.channels_last)
    loss_fn = MultiLabelProxyAnchorLoss(len(classes), 512)
    head = [*net.neck.parameters(), *net.head.parameters()]
    opt = torch.optim.AdamW(
        [{"params": net.backbone.parameters()}, {"params": head, "lr": a.head_lr or a.lr},
         {"params": loss_fn.parameters(), "lr": a.proxy_lr}],
        lr=a.lr, weight_decay=a.weight_decay,
    )
    steps_per_epoch = len(train) // a.batch_size
    total = steps_per_epoch * a.epochs
    warm = steps_per_epoch  # one epoch of linear warm-up, then cosine to 0
    base = [g["lr"] for g in opt.param_groups]
    augment = None if a.no_augment else BatchAugment(a.width, a.height, (a.crop_scale, 1.0), a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    eval_sizes = [tuple(s) for s in (a.eval_size or [[a.width, a.height]])]
    step, train_s = 0, 0.0

    def evaluate(epoch: int, loss: float) -> None:
        for w, h in eval_sizes:
            te = time.monotonic()
            q, g = embed(net, px_val, store, w, h), embed(net, px_train, store, w, h)
            single = retrieval_metrics(q, [r.single_genre for r in val], g, [r.single_genre for r in train])
            v5 = vote_metrics(vote_scores(q, g, gallery_genres, 5), val_genres, vote_classes)
            v10 = vote_metrics(vote_scores(q, g, gallery_genres, 10), val_genres, vote_classes)
            sims = torch.topk(torch.nn.functional.normalize(q) @ torch.nn.functional.normalize(g).T, 100, dim=1).values
            mu = g.mean(dim=0, keepdim=True)  # centring on the gallery's mean embedding (a fixed last layer)
            qc, gc = torch.nn.functional.normalize(q - mu), torch.nn.functional.normalize(g - mu)
            vc5 = vote_metrics(vote_scores(qc, gc, gallery_genres, 5), val_genres, vote_classes)
            vc10 = vote_metrics(vote_scores(qc, gc, gallery_genres, 10), val_genres, vote_classes)
            simc = torch.topk(qc @ gc.T, 100, dim=1).values
            print(json.dumps({
                "name": a.name, "arch": a.arch, "train_size": [a.width, a.height], "eval_size": [w, h],
                "labels": a.labels, "lr": a.lr, "epochs": epoch, "of_epochs": a.epochs, "loss": round(loss, 4),
                "map5": v5["map"], "map10": v10["map"], "auc10": v10["auc"],
                "recall1_macro": single["recall@1"]["macro"], "recall1_micro": single["recall@1"]["micro"],
                "majority5_micro": single["majority@5"]["micro"], "majority5_macro": single["majority@5"]["macro"],
                "spread_1_100": round(float((sims[:, 0] - sims[:, 99]).median()), 4),
                "centred_map5": vc5["map"], "centred_map10": vc10["map"], "centred_auc10": vc10["auc"],
                "centred_spread_1_100": round(float((simc[:, 0] - simc[:, 99]).median()), 4),
                "train_s": round(train_s, 1), "decode_s": round(decode_s, 1), "eval_s": round(time.monotonic() - te, 1),
                "wall_s": round(time.monotonic() - t0, 1), "img_per_s": round(step * a.batch_size / max(train_s, 1e-9), 1),
                "augment": not a.no_augment, "crop_scale": a.crop_scale, "bf16": not a.fp32, "neck": a.neck,
                "head_lr": a.head_lr or a.lr, "proxy_lr": a.proxy_lr,
            }), flush=True)

    for epoch in range(1, a.epochs + 1):
        net.train()
        te = time.monotonic()
        order = torch.randperm(len(train), generator=gen)
        losses = []
        for s in range(steps_per_epoch):
            idx = order[s * a.batch_size : (s + 1) * a.batch_size]
            scale = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
            for g_, b in zip(opt.param_groups, base):
                g_["lr"] = b * scale
            x = normalise_batch(px_train[idx], store)
            x = augment(x) if augment else resize_batch(x, a.width, a.height)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not a.fp32):
                emb = net(x)
            loss = loss_fn(emb.float(), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_value_(list(net.parameters()) + list(loss_fn.parameters()), 10.0)
            opt.step()
            losses.append(loss.item())
            step += 1
        train_s += time.monotonic() - te
        mean_loss = sum(losses) / len(losses)
        print(json.dumps({"name": a.name, "epoch": epoch, "loss": round(mean_loss, 4), "train_s": round(train_s, 1)}),
              file=sys.stderr, flush=True)
        if epoch == a.epochs or (a.eval_every and epoch % a.eval_every == 0):
            evaluate(epoch, mean_loss)


if __name__ == "__main__":
    main()
