"""Lightning callbacks: JSON progress events, keeping the best epoch's weights, writing last.ckpt.

Epochs in events and in the outputs count from 1.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable

import lightning.pytorch as pl
import torch

from .metrics import summary

Emit = Callable[..., None]
# What selects the best epoch: the genre head's mAP over genres (a logistic head fitted on the train
# gallery's embeddings, scored on val: what the genre endpoint serves); without it, the vote's (k=5).
SCORE = "head_map"
FALLBACK_SCORE = "vote_map@5"


def selection_score(metrics: dict) -> float:
    """SCORE, else FALLBACK_SCORE; where no genre can be ranked (a val split whose posters all share their genres), macro Recall@1."""
    flat = summary(metrics)
    for name in (SCORE, FALLBACK_SCORE):
        if flat.get(name) is not None:
            return flat[name]
    return flat.get("recall@1_macro", float("-inf"))


class ProgressEvents(pl.Callback):
    """epoch_start, progress (at most every ``interval`` seconds) and validation events, rank 0 only."""

    def __init__(self, emit: Emit, interval: float = 2.0):
        self.emit = emit
        self.interval = interval
        self._last = float("-inf")
        self._window_images = 0
        self._window_start = 0.0
        self._step_seconds: float | None = None
        self._val_seconds = 0.0
        self._val_start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module) -> None:
        self._window_images, self._window_start = 0, time.monotonic()
        if trainer.is_global_zero:
            self.emit(
                "epoch_start",
                epoch=trainer.current_epoch + 1,
                epochs=trainer.max_epochs,
                steps=trainer.num_training_batches,
                backbone_frozen=not pl_module.backbone_trainable_in(trainer.current_epoch),
            )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._window_images += len(batch[0]) * trainer.world_size
        now = time.monotonic()
        if not trainer.is_global_zero or now - self._last < self.interval:
            return
        elapsed = max(now - self._window_start, 1e-9)
        rate = self._window_images / elapsed
        steps_in_window = self._window_images / max(len(batch[0]) * trainer.world_size, 1)
        self._step_seconds = elapsed / max(steps_in_window, 1)
        steps = trainer.num_training_batches
        remaining_steps = steps - (batch_idx + 1) + (trainer.max_epochs - trainer.current_epoch - 1) * steps
        remaining_validations = sum(pl_module.validates_in(e) for e in range(trainer.current_epoch, trainer.max_epochs))
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.emit(
            "progress",
            epoch=trainer.current_epoch + 1,
            step=batch_idx + 1,
            steps=steps,
            loss=round(float(loss), 6),
            img_per_s=round(rate, 2),
            eta_s=round(remaining_steps * self._step_seconds + remaining_validations * self._val_seconds, 1),
        )
        self._last = now
        self._window_images, self._window_start = 0, now

    def on_validation_start(self, trainer: pl.Trainer, pl_module) -> None:
        self._val_start = time.monotonic()

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.sanity_checking or pl_module.val_metrics is None:  # an epoch without validation
            return
        self._val_seconds = time.monotonic() - self._val_start
        if trainer.is_global_zero:
            self.emit(
                "validation",
                epoch=trainer.current_epoch + 1,
                loss=None if pl_module.epoch_loss is None else round(pl_module.epoch_loss, 6),
                **({} if pl_module.epoch_teacher_loss is None else {"teacher_loss": round(pl_module.epoch_teacher_loss, 6)}),
                seconds=round(self._val_seconds, 1),
                metrics=pl_module.val_metrics,
            )


class BestEpoch(pl.Callback):
    """Keeps a CPU copy of the trained weights at the best validation epoch (SCORE; ties keep the
    earlier epoch) and the per-epoch history. Its state goes into the checkpoint, so a resumed run
    still knows the best epoch before the resume."""

    def __init__(self):
        self.epoch: int | None = None
        self.score = float("-inf")
        self.metrics: dict | None = None
        self.net_state: dict[str, torch.Tensor] | None = None
        self.centre: torch.Tensor | None = None
        self.history: list[dict] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.sanity_checking or pl_module.val_metrics is None:
            return
        epoch = trainer.current_epoch + 1
        metrics = pl_module.val_metrics
        teacher = {} if pl_module.epoch_teacher_loss is None else {"teacher_loss": pl_module.epoch_teacher_loss}
        self.history.append({"epoch": epoch, "loss": pl_module.epoch_loss, **teacher, **summary(metrics)})
        score = selection_score(metrics)
        if score > self.score:
            self.epoch, self.score, self.metrics = epoch, score, copy.deepcopy(metrics)
            # head mode trains only the neck and head: the frozen backbone need not be copied (nor checkpointed twice)
            self.net_state = {
                k: v.detach().to("cpu", copy=True)
                for k, v in pl_module.net.state_dict().items()
                if pl_module.mode == "full" or not k.startswith("backbone.")
            }
            self.centre = pl_module.val_centre.detach().to("cpu", copy=True)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "score": self.score,
            "metrics": self.metrics,
            "net_state": self.net_state,
            "centre": self.centre,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.score, self.metrics = state["epoch"], state["score"], state["metrics"]
        self.net_state, self.history = state["net_state"], list(state["history"])
        self.centre = state.get("centre")


class LastCheckpoint(pl.Callback):
    """Writes the resumable checkpoint once, when training ends: a run that does not finish is
    discarded whole, so per-epoch copies (hundreds of MB each in full mode) would buy nothing."""

    def __init__(self, path):
        self.path = path

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        trainer.save_checkpoint(self.path)
