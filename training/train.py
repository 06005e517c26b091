"""``train``: proxy-anchor fine-tuning on the manifest's train split, best epoch selected on val.

Writes DIR/model.onnx, model.pt, model.json, metrics.json and last.ckpt. Everything is written
into a temporary directory beside DIR and renamed into place at the end (as export-base does), so
a failed or cancelled run leaves no DIR. The test split is never read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, TensorDataset

from . import events
from .callbacks import SCORE, BestEpoch, LastCheckpoint, ProgressEvents
from .data import (
    LABEL_FIELDS, MemoryPosters, PosterDataset, class_names, label_targets, labels_of, quiet_worker, split_records, unknown_labels,
)  # fmt: skip
from .export import MODEL_FORMAT, _check_destination, _publish
from .features import cached_features, default_cache_dir
from .fit_head import fit_model_dir
from .initial import initial_model
from .manifest import read_manifest
from .model import ARCHS, EmbeddingNet, save_checkpoint, with_centre
from .module import CHECKPOINT_KEY, SCHEDULES, ProxyAnchorModule
from .onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx, verify_onnx
from .pixels import BatchAugment, load_uint8, resize_batch
from .recipes import RECIPE_KEYS, RECIPES, recipe_name, resolve_recipe
from .weights import sha256_file

VERIFY_IMAGES = 3
OUTPUT_FILES = ("model.onnx", "model.pt", "model.json", "metrics.json", "last.ckpt")
MEMORY_LIMIT_BYTES = 4 << 30  # decoded train + val posters held in memory up to this; else decoded per batch


class TrainError(RuntimeError):
    pass


@dataclass
class TrainOptions:
    """Recipe fields left at None take the recipe's value (training.recipes); the rest are run options."""

    manifest: str
    out: str
    recipe: str = "auto"  # auto: "paper" on CUDA, "cpu" on a CPU
    mode: str | None = None
    epochs: int | None = None  # None: the recipe's, or the resumed checkpoint's
    batch_size: int | None = None
    lr: float | None = None
    proxy_lr_multiplier: float | None = None
    weight_decay: float | None = None
    warmup_epochs: int | None = None
    schedule: str | None = None
    lr_warmup_epochs: float | None = None
    grad_clip: float | None = None
    grad_clip_algorithm: str | None = None
    embedding_dim: int | None = None
    margin: float | None = None
    alpha: float | None = None
    labels: str | None = None
    freeze_bn: bool | None = None
    augment: bool | None = None
    crop_scale: float | None = None
    train_width: int | None = None
    train_height: int | None = None
    val_every: int | None = None
    teacher_layer: str | None = None  # distil from the pretrained teacher's features at this layer (e.g. mixed5)
    teacher_weight: float | None = None
    arch: str | None = None
    neck: str | None = None
    precision: str = "auto"
    data: str = "auto"
    init_from: str | None = None
    weights: str | None = None
    weights_sha256: str | None = None
    calibrate: int = 512
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    resume: str | None = None
    limit_batches: int | None = None
    workers: int | None = None
    device: str = "auto"
    devices: int | None = None  # per node; None: every GPU on CUDA, one process on a CPU
    num_nodes: int = 1
    cache_dir: str | None = None
    progress_interval: float = 2.0
    opset: int | None = None
    force: bool = False



@dataclass
class _Start:
    """Where a run starts: a fresh initial model, or a resumed checkpoint."""

    net: EmbeddingNet
    spec: dict[str, Any]
    classes: list[str]
    init: dict[str, Any]  # {"kind": ..., "source": ...}
    hp: dict[str, Any]  # RECIPE_KEYS
    epochs: int
    recipe: str
    accelerator: str
    epochs_done: int = 0


def train(
    opts: TrainOptions,
    emit: Callable[..., None] = events.emit,
    log: Callable[[str], None] = events.log,
) -> Path | None:
    """Run one training job; returns DIR (None on non-zero DDP ranks, which write nothing)."""
    t0 = time.monotonic()
    if rank_zero_only.rank != 0:  # DDP workers re-run this command: one voice on stdout, one writer
        emit, log = (lambda *a, **k: None), (lambda m: None)
    out = Path(opts.out).expanduser().resolve()
    _check_destination(out, opts.force)
    records = read_manifest(opts.manifest)
    train_recs, val_recs = split_records(records, "train"), split_records(records, "val")
    if not val_recs:
        raise TrainError(f"{opts.manifest}: no 'val' records to select the best epoch on")
    accelerator = _accelerator(opts.device)
    start = _resume(opts, accelerator, log) if opts.resume else _fresh(opts, accelerator, train_recs, emit, log)
    hp, spec = start.hp, start.spec
    start.net.centre.zero_()  # trained uncentred (an init model's centre is its own); set anew from the best epoch
    if len(train_recs) < hp["batch_size"]:
        raise TrainError(f"{len(train_recs)} train posters: fewer than one batch of {hp['batch_size']}")
    if unknown_labels(train_recs, start.classes, hp["labels"]):
        raise TrainError("the manifest's train labels differ from the checkpoint's classes")
    train_labels = label_targets(train_recs, start.classes, hp["labels"])
    val_labels = label_targets(val_recs, start.classes, hp["labels"])

    on_gpu = accelerator == "cuda"
    precision = _precision(opts.precision, on_gpu)
    workers = opts.workers if opts.workers is not None else _default_workers(on_gpu)
    config = {
        "recipe": start.recipe,
        "arch": start.net.arch,
        "neck": start.net.neck_kind,
        "embedding_dim": start.net.embedding_dim,
        "width": spec["width"],
        "height": spec["height"],
        "preprocessing": spec,
        "init": start.init["kind"],
        "init_source": start.init["source"],
        "classes": start.classes,
        "epochs": start.epochs,
        **hp,
    }
    emit(
        "start", out=str(out), mode=hp["mode"], epochs=start.epochs, width=spec["width"], height=spec["height"],
        embedding_dim=start.net.embedding_dim, train=len(train_recs), val=len(val_recs), classes=len(start.classes),
        init=start.init["kind"], device=accelerator, resume=opts.resume, recipe=start.recipe, labels=hp["labels"],
        precision=precision, arch=start.net.arch,
        train_width=hp["train_width"] or spec["width"], train_height=hp["train_height"] or spec["height"],
    )  # fmt: skip

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        # a resumed run draws new batches rather than replaying the first epochs' order
        pl.seed_everything(hp["seed"] + start.epochs_done, workers=True, verbose=False)
        module = ProxyAnchorModule(start.net, len(start.classes), hp)
        module.run_config = config
        module.val_labels = tuple([r.single_genre for r in recs] for recs in (val_recs, train_recs))
        module.val_genres = tuple([labels_of(r, "genres") for r in recs] for recs in (val_recs, train_recs))
        module.spec = spec
        module.train_transform = _train_transform(hp, spec, start.epochs_done)
        if hp["teacher_layer"]:
            module.teacher = _teacher_matrix(hp["teacher_layer"], train_recs, opts.cache_dir, emit, log, on_gpu, workers)
        data = _Data(spec, train_recs, val_recs, train_labels, val_labels, workers, on_gpu)
        datasets = _datasets(hp, module, data, opts.data, opts.cache_dir, emit, log)
        in_memory = isinstance(datasets["train"], MemoryPosters)
        loaders = _loaders(datasets, hp["batch_size"], workers if hp["mode"] == "full" and not in_memory else 0, on_gpu)
        best = BestEpoch()
        callbacks = [ProgressEvents(emit, opts.progress_interval), best, LastCheckpoint(tmp / "last.ckpt")]
        trainer = _trainer(hp, accelerator, precision, start.epochs, opts.limit_batches, callbacks, tmp, opts.devices, opts.num_nodes)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # the frozen backbone
            trainer.fit(module, train_dataloaders=loaders[0], val_dataloaders=loaders[1:], ckpt_path=opts.resume)
        if not trainer.is_global_zero:
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        if best.net_state is None:
            raise TrainError("no validation ran, so there is no best epoch to export")

        net = module.net.to("cpu", dtype=torch.float32, memory_format=torch.contiguous_format)
        net.load_state_dict(best.net_state, strict=False)  # head mode keeps only the neck's and head's weights
        if best.centre is not None:  # None only for a best epoch kept by a checkpoint from before centring
            net.centre.copy_(best.centre)
        net.eval()
        log(f"best epoch {best.epoch}: val {SCORE} {best.score:.4f}")
        run = {
            "recipe": start.recipe,
            "precision": precision,
            "data": "memory" if in_memory else "disk",
            "limit_batches": opts.limit_batches,
            "manifest": os.path.abspath(opts.manifest),
            "manifest_sha256": sha256_file(opts.manifest),
            "images": {"train": len(train_recs), "val": len(val_recs)},
            "resumed_from": os.path.abspath(opts.resume) if opts.resume else None,
        }
        _write_outputs(tmp, net, config, best, datasets["verify"], run, opts.opset, t0, emit, log)
        head = fit_model_dir(tmp, opts.manifest, log)
        emit("genre_head", **head["fit"]["val_metrics"])
        _publish(tmp, out, opts.force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = round(time.monotonic() - t0, 1)
    log(f"wrote {out} in {seconds} s")
    emit("done", out=str(out), best_epoch=best.epoch, seconds=seconds)
    return out


def _fresh(opts: TrainOptions, accelerator: str, train_recs, emit, log) -> _Start:
    try:
        recipe = recipe_name(opts.recipe, accelerator == "cuda")
    except ValueError as e:
        raise TrainError(str(e)) from None
    hp, epochs = resolve_recipe(recipe, {k: getattr(opts, k) for k in (*RECIPE_KEYS, "epochs")})
    _check_recipe(hp)
    if opts.arch is not None and opts.arch not in ARCHS:
        raise TrainError(f"--arch must be one of {sorted(ARCHS)}, got {opts.arch!r}")
    pl.seed_everything(hp["seed"], workers=True, verbose=False)
    initial = initial_model(
        train=train_recs, init_from=opts.init_from, weights=opts.weights, weights_sha256=opts.weights_sha256,
        width=opts.width, height=opts.height, embedding_dim=opts.embedding_dim, seed=hp["seed"],
        calibrate=opts.calibrate, batch_size=hp["batch_size"], arch=opts.arch, neck=opts.neck, emit=emit, log=log,
    )  # fmt: skip
    init = {"kind": initial.kind, "source": initial.source}
    classes = class_names(train_recs, hp["labels"])
    log(f"recipe {recipe}: " + ", ".join(f"{k}={hp[k]}" for k in RECIPE_KEYS) + f", epochs={epochs}")
    return _Start(initial.net, initial.spec, classes, init, hp, epochs, recipe, accelerator)


def _resume(opts: TrainOptions, accelerator: str, log) -> _Start:
    if not os.path.isfile(opts.resume):
        raise TrainError(f"--resume: no such checkpoint {opts.resume}")
    ckpt = torch.load(opts.resume, map_location="cpu", weights_only=False)  # Lightning's format, written by us
    if not isinstance(ckpt, dict) or CHECKPOINT_KEY not in ckpt:
        raise TrainError(f"--resume: {opts.resume} is not a checkpoint written by `python -m training train`")
    config = ckpt[CHECKPOINT_KEY]
    done = ckpt["epoch"]  # written when training ended (callbacks.LastCheckpoint): the epochs done
    epochs = opts.epochs or config["epochs"]
    if epochs <= done:
        raise TrainError(f"--resume: {done} epochs already done; pass --epochs above that")
    net = EmbeddingNet(config["embedding_dim"], config["arch"], config.get("neck", "none"))
    net.load_state_dict(with_centre({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}, net.embedding_dim))
    log(f"resuming {opts.resume} ({done} epochs done) up to epoch {epochs}")
    init = {"kind": config["init"], "source": config["init_source"]}
    recipe = config.get("recipe", "paper")  # checkpoints from before recipes were the paper's
    hp = {k: config.get(k, RECIPES[recipe][k]) for k in RECIPE_KEYS}
    return _Start(net, config["preprocessing"], config["classes"], init, hp, epochs, recipe, accelerator, done)


def _trainer(hp, accelerator: str, precision: str, epochs: int, limit_batches, callbacks, root: Path, devices: int | None = None,
             num_nodes: int = 1) -> pl.Trainer:  # fmt: skip
    processes = (devices or (torch.cuda.device_count() if accelerator == "cuda" else 1)) * num_nodes
    return pl.Trainer(
        accelerator=accelerator,
        devices=devices or "auto",
        num_nodes=num_nodes,
        strategy=_strategy(hp, accelerator, processes),
        # BatchNorm statistics of the global batch, as one process would see them (PyTorch's SyncBatchNorm is
        # CUDA-only: on CPU processes each normalises its own shard)
        sync_batchnorm=processes > 1 and accelerator == "cuda",
        precision=precision,
        max_epochs=epochs,
        limit_train_batches=limit_batches,
        gradient_clip_val=hp["grad_clip"] or None,
        gradient_clip_algorithm=hp["grad_clip_algorithm"],
        callbacks=callbacks,
        default_root_dir=root,
        enable_checkpointing=False,  # Lightning's per-epoch checkpoints: LastCheckpoint writes the one we keep
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def _precision(choice: str, on_gpu: bool) -> str:
    """auto: bf16 autocast on CUDA, and on a CPU whose oneDNN has bf16 kernels (AVX-512 BF16, AMX); else float32."""
    if choice not in ("auto", "32", "bf16"):
        raise TrainError(f"--precision must be auto, 32 or bf16, got {choice!r}")
    if choice == "auto":
        choice = "bf16" if on_gpu or _cpu_has_bf16() else "32"
    return "bf16-mixed" if choice == "bf16" else "32-true"


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _check_recipe(hp: dict[str, Any]) -> None:
    if hp["mode"] not in ("full", "head"):
        raise TrainError(f"--mode must be full or head, got {hp['mode']!r}")
    if hp["grad_clip_algorithm"] not in ("value", "norm"):
        raise TrainError(f"--grad-clip-algorithm must be value or norm, got {hp['grad_clip_algorithm']!r}")
    if not 0 < hp["crop_scale"] <= 1:
        raise TrainError(f"--crop-scale must be in (0, 1], got {hp['crop_scale']}")
    if hp["labels"] not in LABEL_FIELDS:
        raise TrainError(f"--labels must be one of {list(LABEL_FIELDS)}, got {hp['labels']!r}")
    if hp["schedule"] not in SCHEDULES:
        raise TrainError(f"--schedule must be one of {list(SCHEDULES)}, got {hp['schedule']!r}")
    if (hp["train_width"] is None) != (hp["train_height"] is None):
        raise TrainError("--train-width and --train-height go together")


@dataclass
class _Data:
    spec: dict[str, Any]
    train: list
    val: list
    train_labels: torch.Tensor
    val_labels: torch.Tensor
    workers: int
    on_gpu: bool


def _datasets(hp, module, d: _Data, data: str, cache_dir, emit, log) -> dict[str, Any]:
    """train, val (queries), gallery (train, unaugmented) and verify (a few val images for the ONNX check).

    Full mode: decoded posters in memory (uint8, augmented per batch on the device) when they fit in
    MEMORY_LIMIT_BYTES or ``data`` is "memory", else decoded from disk per item. Head mode: cached
    backbone features instead of images.
    """
    spec, train_recs, val_recs, train_labels, val_labels = d.spec, d.train, d.val, d.train_labels, d.val_labels
    verify = PosterDataset(val_recs[:VERIFY_IMAGES], spec, val_labels[:VERIFY_IMAGES])
    if data not in ("auto", "memory", "disk"):
        raise TrainError(f"--data must be auto, memory or disk, got {data!r}")
    if hp["mode"] == "full":
        need = (len(train_recs) + len(val_recs)) * 3 * spec["width"] * spec["height"]
        if data == "memory" or (data == "auto" and need <= MEMORY_LIMIT_BYTES):
            log(f"decoding {len(train_recs) + len(val_recs)} posters into memory ({need / 2**20:.0f} MiB)")
            decoded = {}
            for name, recs in (("train", train_recs), ("val", val_recs)):
                decoded[name] = load_uint8(
                    recs, spec, lambda done, total, name=name: emit("decode", split=name, done=done, total=total)
                )
            train_ds = MemoryPosters(decoded["train"], train_labels)
            return {"train": train_ds, "val": MemoryPosters(decoded["val"], val_labels), "gallery": train_ds,
                    "verify": verify}  # fmt: skip
        eval_train = PosterDataset(train_recs, spec, train_labels)
        return {"train": eval_train, "val": PosterDataset(val_recs, spec, val_labels), "gallery": eval_train,
                "verify": verify}  # fmt: skip

    features = {}
    for name, recs, labels in (("train", train_recs, train_labels), ("val", val_recs, val_labels)):
        features[name], info = cached_features(
            module.net.backbone, PosterDataset(recs, spec, labels), cache_dir or default_cache_dir(),
            batch_size=max(hp["batch_size"], 64), workers=d.workers, device="cuda" if d.on_gpu else "cpu",
            on_progress=lambda d, t, r, name=name: emit("features", split=name, done=d, total=t, img_per_s=round(r, 2)),
            write=rank_zero_only.rank == 0,
        )  # fmt: skip
        log(f"{name} features: {info['hits']} from the cache, {info['computed']} computed ({info['file']})")
    train_ds = TensorDataset(features["train"], train_labels, torch.arange(len(train_labels)))
    val_ds = TensorDataset(features["val"], val_labels, torch.arange(len(val_labels)))
    return {"train": train_ds, "val": val_ds, "gallery": train_ds, "verify": verify}


def _teacher_matrix(layer: str, train_recs, cache_dir, emit, log, on_gpu: bool = False, workers: int = 0) -> torch.Tensor:
    """The teacher's pooled features of the train posters (computed once, cached; on the GPU where training
    runs on one), centred on their mean."""
    from .teacher_features import TeacherFeatureSpec, teacher_features

    try:
        features, info = teacher_features(
            train_recs, TeacherFeatureSpec(layers=(layer,)), cache_dir=cache_dir,
            device="cuda" if on_gpu else "cpu", workers=workers, batch_size=64 if on_gpu else 32,
            on_progress=lambda d, t, r: emit("teacher_features", done=d, total=t, img_per_s=round(r, 2)),
        )  # fmt: skip
    except (OSError, ValueError, KeyError) as e:
        raise TrainError(f"--teacher-layer {layer}: {e}") from None
    log(f"teacher {layer} features: {info['hits']} from the cache, {info['computed']} computed ({info['file']})")
    matrix = features.matrix(layer)
    return matrix - matrix.mean(dim=0, keepdim=True)


def _train_transform(hp, spec, epochs_done: int = 0) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Full mode: what a normalised training batch goes through (random crop and flip, at the training size)."""
    if hp["mode"] != "full":
        return None
    width, height = hp["train_width"] or spec["width"], hp["train_height"] or spec["height"]
    if hp["augment"]:
        # a resumed run draws new crops rather than replaying the first epochs' (as it draws new batches)
        return BatchAugment(width, height, (hp["crop_scale"], 1.0), seed=hp["seed"] + epochs_done)
    if (width, height) == (spec["width"], spec["height"]):
        return None
    return lambda x: resize_batch(x, width, height)


def _loaders(datasets, batch_size: int, workers: int, on_gpu: bool) -> tuple[DataLoader, DataLoader, DataLoader]:
    """(train, val queries, train gallery); validation is forward-only, so twice the batch."""
    common: dict[str, Any] = {"num_workers": workers, "pin_memory": on_gpu, "persistent_workers": workers > 0}
    if workers > 0:
        common["worker_init_fn"] = quiet_worker
    return (
        DataLoader(datasets["train"], batch_size=batch_size, shuffle=True, drop_last=True, **common),
        DataLoader(datasets["val"], batch_size=batch_size * 2, **common),
        DataLoader(datasets["gallery"], batch_size=batch_size * 2, **common),
    )


def _write_outputs(tmp: Path, net, config, best, verify, run, opset, t0, emit, log) -> None:
    save_checkpoint(net, config, tmp / "model.pt")
    emit("checkpoint", file="model.pt")
    log("exporting ONNX")
    opset = export_onnx(net, tmp / "model.onnx", config["width"], config["height"], opset)
    emit("onnx", file="model.onnx", opset=opset, bytes=(tmp / "model.onnx").stat().st_size)
    cosines = verify_onnx(net, tmp / "model.onnx", torch.stack([verify[i][0] for i in range(len(verify))]))
    emit("verify", images=len(verify), min_cosine=min(cosines.values()))

    metrics = {"split": "val", "gallery_split": "train", "label": config["labels"], "epoch": best.epoch, **best.metrics}
    (tmp / "metrics.json").write_text(json.dumps({**metrics, "history": best.history}, indent=2) + "\n")
    training = {k: config[k] for k in RECIPE_KEYS if k != "mode"}
    training.update(epochs=config["epochs"], best_epoch=best.epoch, **run, seconds=round(time.monotonic() - t0, 1))
    meta = {
        "format": MODEL_FORMAT,
        "arch": net.arch,
        "neck": net.neck_kind,
        "embedding_dim": net.embedding_dim,
        "input": {"name": INPUT_NAME, "width": config["width"], "height": config["height"]},
        "output": {"name": OUTPUT_NAME},
        "preprocessing": config["preprocessing"],
        "init": config["init"],
        "init_source": config["init_source"],
        "mode": config["mode"],
        "labels": {"field": config["labels"], "classes": config["classes"]},
        "metrics": metrics,
        "training": training,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "torch": torch.__version__.split("+")[0],
    }
    (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    for f in tmp.iterdir():
        if f.name not in OUTPUT_FILES:  # anything else Lightning may have left in its root dir
            shutil.rmtree(f) if f.is_dir() else f.unlink()
        else:
            f.chmod(0o644)
    tmp.chmod(0o755)


def _accelerator(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise TrainError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA device available")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.set_float32_matmul_precision("high")
    return device


def _strategy(hp: dict[str, Any], accelerator: str, processes: int) -> Any:
    """One process: Lightning's own choice. Several (GPUs, CPU processes or nodes): DDP over NCCL on
    CUDA and gloo on CPUs, told when some parameters sit out some steps (a frozen backbone)."""
    if processes <= 1:
        return "auto"
    unused = hp["mode"] == "full" and (hp["warmup_epochs"] > 0 or hp["freeze_bn"])
    return DDPStrategy(process_group_backend="nccl" if accelerator == "cuda" else "gloo", find_unused_parameters=unused)


def _default_workers(on_gpu: bool) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, cpus - 1) if on_gpu else min(2, max(0, cpus - 1))
