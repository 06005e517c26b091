"""Training recipes: named sets of the options that decide how a model is trained.

``paper``: the paper's recipe (ResNet-50, batch 32, AdamW at 1e-4, 20 epochs, alpha 32, margin
0.1) with the proxy-anchor authors' additions (proxies at 100x the rate, one epoch with the
backbone frozen, value clipping); for a GPU and an ImageNet start.

``cpu``: what trains the whole network on 2 CPU cores within 90 minutes on the demo catalog from
a random initialisation (measured in docs/evaluation/training-cpu.md): training crops at a
reduced size (96x144; with a model of that input size, as the default model is), bf16 autocast
and channels_last (precision "auto"), decoded posters held in memory, a wide random crop that
keeps colour, a higher rate with a linear warm-up and a cosine decay, no frozen epochs (a random
backbone has nothing to protect), and validation every 5 epochs (it embeds 6,500 posters).

An option given explicitly always wins over the recipe; ``auto`` picks ``paper`` on CUDA and
``cpu`` otherwise. The resolved values are stored in the checkpoint, so a resumed run keeps them.
"""

from __future__ import annotations

from typing import Any, Mapping

# Stored in the checkpoint; a resumed run takes them from there.
RECIPE_KEYS = (
    "mode", "batch_size", "lr", "proxy_lr_multiplier", "weight_decay", "warmup_epochs", "schedule",
    "lr_warmup_epochs", "grad_clip", "grad_clip_algorithm", "margin", "alpha", "labels", "freeze_bn", "augment",
    "crop_scale", "train_width", "train_height", "val_every", "seed", "teacher_layer", "teacher_weight",
)  # fmt: skip

PAPER: dict[str, Any] = {
    "mode": "full",
    "epochs": 20,
    "batch_size": 32,
    "lr": 1e-4,
    "proxy_lr_multiplier": 100.0,
    "weight_decay": 1e-4,
    "warmup_epochs": 1,
    "schedule": "constant",
    "lr_warmup_epochs": 0.0,
    "grad_clip": 10.0,
    "grad_clip_algorithm": "value",
    "margin": 0.1,
    "alpha": 32.0,
    "labels": "genres",
    "freeze_bn": False,
    "augment": True,
    "crop_scale": 0.7,
    "train_width": None,  # None: the model's input size
    "train_height": None,
    "val_every": 1,
    "seed": 0,
    # distillation from the pretrained teacher (training/teacher.py): off until an ablation on val says it wins
    "teacher_layer": None,
    "teacher_weight": 1.0,
}

CPU: dict[str, Any] = {
    **PAPER,
    "epochs": 40,
    "lr": 2e-3,
    "proxy_lr_multiplier": 10.0,
    "warmup_epochs": 0,
    "schedule": "cosine",
    "lr_warmup_epochs": 1.0,
    "crop_scale": 0.35,
    "train_width": 96,
    "train_height": 144,
    "val_every": 5,  # validation embeds 6,500 posters: a tenth of an epoch's time, every 5 epochs and the last
}

RECIPES: dict[str, dict[str, Any]] = {"paper": PAPER, "cpu": CPU}


def recipe_name(choice: str, on_gpu: bool) -> str:
    if choice == "auto":
        return "paper" if on_gpu else "cpu"
    if choice not in RECIPES:
        raise ValueError(f"--recipe must be auto or one of {sorted(RECIPES)}, got {choice!r}")
    return choice


def resolve_recipe(name: str, given: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """(RECIPE_KEYS values, epochs): each option as given, else the recipe's."""
    base = RECIPES[name]
    hp = {k: given[k] if given.get(k) is not None else base[k] for k in RECIPE_KEYS}
    epochs = given.get("epochs") or base["epochs"]
    return hp, epochs
