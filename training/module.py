"""The Lightning module: the embedding network trained with pytorch-metric-learning's ProxyAnchorLoss.

Modes: ``full`` trains the whole network on images (the backbone frozen during the first
``warmup_epochs``); ``head`` trains only the linear head on cached backbone features, the backbone
stays frozen. Either way the proxies get their own AdamW parameter group at ``proxy_lr_multiplier``
times the learning rate (the proxy-anchor authors' setting).

Validation embeds the ``val`` queries and the ``train`` gallery (dataloaders 0 and 1) and computes
training.metrics on them; the result is left in ``val_metrics`` for the callbacks.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import lightning.pytorch as pl
import torch
from pytorch_metric_learning.losses import ProxyAnchorLoss
from torch import nn

from .metrics import retrieval_metrics
from .model import EmbeddingNet

MODES = ("full", "head")
QUERIES, GALLERY = 0, 1
CHECKPOINT_KEY = "marquee"  # the run configuration inside Lightning's checkpoint (what --resume rebuilds from)


class ProxyAnchorModule(pl.LightningModule):
    def __init__(self, net: EmbeddingNet, num_classes: int, hp: Mapping[str, Any]):
        super().__init__()
        if hp["mode"] not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {hp['mode']!r}")
        self.net = net
        self.loss_fn = ProxyAnchorLoss(num_classes, net.embedding_dim, margin=hp["margin"], alpha=hp["alpha"])
        self.hp = dict(hp)
        self.backbone_frozen = False
        self.val_labels: tuple[Sequence[str], Sequence[str]] = ((), ())  # (queries, gallery), set by the caller
        self.val_metrics: dict | None = None
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
        self._loss_sum, self._loss_count = None, 0

    # --- training ---------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        if self.device.type == "cuda":
            self.net.to(memory_format=torch.channels_last)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Unit embeddings of images (full) or of pooled backbone features (head)."""
        if self.mode == "head":
            return self.net.embed_features(x)
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, labels, _ = batch
        # float32 for the loss: under bf16 autocast the library would cast its proxies to bf16 in place.
        loss = self.loss_fn(self.embed(x).float(), labels)
        detached = loss.detach()
        self._loss_sum = detached if self._loss_sum is None else self._loss_sum + detached
        self._loss_count += 1
        return loss

    @property
    def epoch_loss(self) -> float | None:
        """Mean training loss of the current epoch so far (validation runs before on_train_epoch_end)."""
        return float(self._loss_sum) / self._loss_count if self._loss_count else None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trained = self.net.parameters() if self.mode == "full" else self.net.head.parameters()
        lr, proxy_lr = self.hp["lr"], self.hp["lr"] * self.hp["proxy_lr_multiplier"]
        return torch.optim.AdamW(
            [
                {"params": list(trained), "name": "net"},
                {"params": list(self.loss_fn.parameters()), "lr": proxy_lr, "name": "proxies"},
            ],
            lr=lr,
            weight_decay=self.hp["weight_decay"],
        )

    # --- validation -------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._val_outputs = {QUERIES: [], GALLERY: []}

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, _, positions = batch
        self._val_outputs[dataloader_idx].append((self.embed(x).float(), positions))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        queries, gallery = (self._gather(i, len(self.val_labels[i])) for i in (QUERIES, GALLERY))
        self.val_metrics = retrieval_metrics(queries, self.val_labels[QUERIES], gallery, self.val_labels[GALLERY])
        self._val_outputs = {}

    def _gather(self, loader: int, n: int) -> torch.Tensor:
        """All ranks' embeddings of one dataloader, back in dataset order (the distributed sampler pads)."""
        parts = self._val_outputs[loader]
        emb = torch.cat([e for e, _ in parts])
        pos = torch.cat([p for _, p in parts]).to(emb.device)
        if self.trainer.world_size > 1:
            emb = self.all_gather(emb).flatten(0, 1)
            pos = self.all_gather(pos).flatten(0, 1)
        out = torch.zeros(n, emb.shape[1], dtype=emb.dtype, device=emb.device)
        out[pos] = emb
        return out.cpu()


def _batchnorms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
