"""The Lightning module: the embedding network trained with multi-label proxy-anchor loss.

Modes: ``full`` trains the whole network on images (the backbone frozen during the first
``warmup_epochs``); ``head`` trains only the linear head on cached backbone features, the backbone
stays frozen. Either way the proxies get their own AdamW parameter group at ``proxy_lr_multiplier``
times the learning rate (the proxy-anchor authors' setting), and with ``schedule: cosine`` every
group's rate rises linearly over ``lr_warmup_epochs`` and then follows a cosine to zero.

Full mode may take uint8 batches (training.data.MemoryPosters): they are normalised after the
transfer to the device and, in training only, passed through ``train_transform`` (a random crop
and flip, at the training size).

Validation embeds the ``val`` queries and the ``train`` gallery (dataloaders 0 and 1), centres both
on the gallery's mean embedding (``val_centre``, what export puts in the network), and computes
training.metrics and the genre vote's ranking figures (training.vote) on them; the result is left
in ``val_metrics`` for the callbacks.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import lightning.pytorch as pl
import torch
from torch import nn

from .genre_head import fit_logistic
from .losses import MultiLabelProxyAnchorLoss, RelationalDistillationLoss, global_batch_loss
from .metrics import retrieval_metrics
from .model import EmbeddingNet
from .pixels import normalise_batch
from .vote import multi_hot, vote_metrics, vote_scores

MODES = ("full", "head")
SCHEDULES = ("constant", "cosine")
QUERIES, GALLERY = 0, 1
VOTE_KS = (5, 10)  # the genre endpoint's default k, and 10
SELECTION_L2 = 1e-3  # the genre head's penalty while epochs are compared (export chooses its own on val)
CHECKPOINT_KEY = "marquee"  # the run configuration inside Lightning's checkpoint (what --resume rebuilds from)


class ProxyAnchorModule(pl.LightningModule):
    def __init__(self, net: EmbeddingNet, num_classes: int, hp: Mapping[str, Any]):
        super().__init__()
        if hp["mode"] not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {hp['mode']!r}")
        self.net = net
        self.loss_fn = MultiLabelProxyAnchorLoss(num_classes, net.embedding_dim, margin=hp["margin"], alpha=hp["alpha"])
        self.hp = dict(hp)
        self.backbone_frozen = False
        # Set by the caller: single genres and genre lists of (queries, gallery), the spec that
        # normalises uint8 batches, and the training-time transform of normalised image batches.
        self.val_labels: tuple[Sequence[str], Sequence[str]] = ((), ())
        self.val_genres: tuple[Sequence[Sequence[str]], Sequence[Sequence[str]]] = ((), ())
        self.spec: Mapping[str, Any] | None = None
        self.train_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.val_metrics: dict | None = None
        # Distillation: the teacher's centred features of the train posters, in the train dataset's order (set by the caller)
        self.teacher: torch.Tensor | None = None
        self.distill_fn = RelationalDistillationLoss()
        self._teacher_sum: torch.Tensor | None = None
        self.val_centre: torch.Tensor | None = None
        self.run_config: dict[str, Any] = {}
        self._val_outputs: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0
        if self.mode == "head":
            self.set_backbone_trainable(False)

    @property
    def mode(self) -> str:
        return self.hp["mode"]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.run_config

    # --- freezing ---------------------------------------------------------------------------

    def backbone_trainable_in(self, epoch: int) -> bool:
        """``epoch`` counts from 0."""
        return self.mode == "full" and epoch >= self.hp["warmup_epochs"]

    def set_backbone_trainable(self, trainable: bool) -> None:
        self.backbone_frozen = not trainable
        for p in self.net.backbone.parameters():
            p.requires_grad_(trainable)
        if trainable and self.hp["freeze_bn"]:
            for bn in _batchnorms(self.net.backbone):
                for p in bn.parameters():
                    p.requires_grad_(False)
        self.train(self.training)  # re-apply which layers may update running statistics

    def train(self, mode: bool = True) -> "ProxyAnchorModule":
        super().train(mode)
        if mode and self.backbone_frozen:
            self.net.backbone.eval()  # a frozen backbone keeps its BatchNorm statistics too
        elif mode and self.hp["freeze_bn"]:
            for bn in _batchnorms(self.net.backbone):
                bn.eval()
        return self

    def on_train_epoch_start(self) -> None:
        self.set_backbone_trainable(self.backbone_trainable_in(self.current_epoch))
        self._loss_sum, self._loss_count, self._teacher_sum = None, 0, None

    # --- training ---------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        if self.mode == "full":
            # NHWC: oneDNN's fast convolutions on a CPU (1.6x in float32, more under bf16), cuDNN's on a GPU
            self.net.to(memory_format=torch.channels_last)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, targets, positions = batch
        if x.dtype == torch.uint8:
            if self.spec is None:
                raise RuntimeError("uint8 image batches need the module's preprocessing spec")
            x = normalise_batch(x, self.spec)
        # images (in memory or decoded from disk) are cropped in training; head mode's features are not images
        if x.dim() == 4 and self._trainer is not None and self._trainer.training and self.train_transform is not None:
            x = self.train_transform(x)
        return x, targets, positions

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Unit embeddings of images (full) or of pooled backbone features (head)."""
        if self.mode == "head":
            return self.net.embed_features(x)
        return self.net(x.contiguous(memory_format=torch.channels_last))

    @property
    def _world_size(self) -> int:
        """The processes training together; 1 when no Trainer drives the module (a step called directly)."""
        return self._trainer.world_size if self._trainer is not None else 1

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, targets, _ = batch
        # float32 for the loss, whatever the autocast precision of the network; several ranks: the global batch's loss
        gather = (lambda t: self.all_gather(t, sync_grads=True)) if self._world_size > 1 else None
        embeddings = self.embed(x).float()
        loss = global_batch_loss(self.loss_fn, embeddings, targets, gather)
        if self.teacher is not None:
            _, _, positions = batch
            if self.teacher.device != embeddings.device:  # moved once: indexing a CPU copy synced the GPU every step
                self.teacher = self.teacher.to(embeddings.device)
            distill = self.distill_fn(embeddings, self.teacher[positions.to(embeddings.device)])
            self._teacher_sum = distill.detach() if self._teacher_sum is None else self._teacher_sum + distill.detach()
            loss = loss + self.hp["teacher_weight"] * distill
        detached = loss.detach()
        self._loss_sum = detached if self._loss_sum is None else self._loss_sum + detached
        self._loss_count += 1
        return loss

    @property
    def epoch_teacher_loss(self) -> float | None:
        """Mean distillation term of the current epoch so far; None without a teacher."""
        return float(self._teacher_sum) / self._loss_count if self._teacher_sum is not None and self._loss_count else None

    @property
    def epoch_loss(self) -> float | None:
        """Mean training loss of the current epoch so far (validation runs before on_train_epoch_end)."""
        return float(self._loss_sum) / self._loss_count if self._loss_count else None

    def configure_optimizers(self):
        trained = self.net.parameters() if self.mode == "full" else [*self.net.neck.parameters(), *self.net.head.parameters()]
        lr, proxy_lr = self.hp["lr"], self.hp["lr"] * self.hp["proxy_lr_multiplier"]
        optimizer = torch.optim.AdamW(
            [
                {"params": list(trained), "name": "net"},
                {"params": list(self.loss_fn.parameters()), "lr": proxy_lr, "name": "proxies"},
            ],
            lr=lr,
            weight_decay=self.hp["weight_decay"],
        )
        if self.hp["schedule"] != "cosine":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = min(total - 1, round(self.hp["lr_warmup_epochs"] * total / max(1, self.trainer.max_epochs)))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, warm, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- validation -------------------------------------------------------------------------

    def validates_in(self, epoch: int) -> bool:
        """Whether validation runs after ``epoch`` (from 0): every ``val_every`` epochs, and after the last."""
        last = self._trainer is not None and epoch + 1 >= self.trainer.max_epochs
        return last or (epoch + 1) % max(1, self.hp["val_every"]) == 0

    def on_validation_epoch_start(self) -> None:
        self._val_outputs = {QUERIES: [], GALLERY: []}
        self.val_metrics = None

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self.validates_in(self.current_epoch):
            return  # the loop still walks the (in-memory) batches; nothing is embedded
        x, _, positions = batch
        self._val_outputs[dataloader_idx].append((self.embed(x).float(), positions))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self.validates_in(self.current_epoch):
            return
        queries, gallery = (self._gather(i, len(self.val_labels[i])) for i in (QUERIES, GALLERY))
        self.val_centre = gallery.mean(dim=0)
        queries, gallery = centred(queries, self.val_centre), centred(gallery, self.val_centre)
        self.val_metrics = validation_metrics(queries, gallery, self.val_labels, self.val_genres)
        self._val_outputs = {}

    def _gather(self, loader: int, n: int) -> torch.Tensor:
        """All ranks' embeddings of one dataloader, back in dataset order (the distributed sampler pads)."""
        parts = self._val_outputs[loader]
        emb = torch.cat([e for e, _ in parts])
        pos = torch.cat([p for _, p in parts]).to(emb.device)
        if self._world_size > 1:
            emb = self.all_gather(emb).flatten(0, 1)
            pos = self.all_gather(pos).flatten(0, 1)
        out = torch.zeros(n, emb.shape[1], dtype=emb.dtype, device=emb.device)
        out[pos] = emb
        return out.cpu()


def centred(embeddings: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """What EmbeddingNet computes once its ``centre`` is set: validation scores the network as it will be exported."""
    return torch.nn.functional.normalize(embeddings - centre, dim=1)


def validation_metrics(queries: torch.Tensor, gallery: torch.Tensor, single, genres) -> dict:
    """Single-genre retrieval figures; ``vote``: the genre vote's mAP and AUC over all genres, per k; ``head``:
    the same figures of a logistic genre head fitted on the gallery (train) and scored on the queries (val)."""
    metrics = retrieval_metrics(queries, single[QUERIES], gallery, single[GALLERY])
    classes = sorted({g for gs in genres[GALLERY] for g in gs})
    gallery_targets = multi_hot(genres[GALLERY], classes)
    query_targets = multi_hot(genres[QUERIES], classes)
    metrics["vote"] = {
        f"k{k}": vote_metrics(vote_scores(queries, gallery, gallery_targets, k), query_targets, classes) for k in VOTE_KS
    }
    # the genre head as export fits it (training.genre_head), at one L2, for choosing the epoch
    weight, bias = fit_logistic(gallery, gallery_targets, SELECTION_L2)
    metrics["head"] = vote_metrics(torch.sigmoid(queries.float() @ weight.T + bias), query_targets, classes)
    return metrics


def warmup_cosine(step: int, warm: int, total: int) -> float:
    """Learning-rate factor: linear from 1/(warm+1) to 1 over ``warm`` steps, then a cosine down to 0 at ``total``."""
    if step < warm:
        return (step + 1) / (warm + 1)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


def _batchnorms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
