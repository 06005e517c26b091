"""The pretrained teacher: nsfwjs's InceptionV3 (npm package nsfwjs 4.4.0) as a PyTorch module.

Its layers up to ``mixed5`` are Keras's ImageNet InceptionV3 weights, frozen while nsfwjs fine-tuned
the top (``mixed6`` on, and three Dense layers) for its five classes; every weight is stored as uint8
with a per-tensor scale. The weights are read from ``node_modules/nsfwjs`` (training.nsfwjs_files),
so ``npm install`` brings them and nothing is downloaded.

Two uses, two input conventions:

* ``probabilities``: the model's own class probabilities, exactly as nsfwjs computes them: RGB scaled
  to [0, 1] (nsfwjs divides by 255) and resized to 299x299 by bilinear interpolation with aligned
  corners (``nsfwjs_input``). Checked against nsfwjs itself in training/tests/test_teacher.py.
* ``pooled``: a mid-level layer's output pooled over space, for distillation. Keras's ImageNet
  InceptionV3 expects RGB scaled to [-1, 1] (``preprocess_input`` mode "tf"), and up to mixed5 these
  are its weights, so features take the poster in [-1, 1] (``feature_spec``) at any size: the layers up
  to mixed10 are fully convolutional, only the classifier top needs 299x299.

Eval mode only; every call runs without gradients.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .keras_graph import KerasGraph
from .nsfwjs_files import read_inception_v3
from .preprocess import default_spec

CLASSES = ("Drawing", "Hentai", "Neutral", "Porn", "Sexy")  # nsfwjs's NSFW_CLASSES, in output order
NSFWJS_SIZE = 299
MIXED_LAYERS = tuple(f"mixed{i}" for i in range(11))
IMAGENET_LAYERS = MIXED_LAYERS[:6]  # mixed0..mixed5: Keras's ImageNet weights, untouched by nsfwjs's fine-tuning
POOLINGS = ("avg", "max")
PRECISIONS = ("32", "bf16")


class Teacher(nn.Module):
    def __init__(self, graph: KerasGraph):
        super().__init__()
        # NHWC: oneDNN's fast convolutions on a CPU (1.8x here in float32, 2.8x more under bf16)
        self.graph = graph.eval().to(memory_format=torch.channels_last)
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "Teacher":
        return super().train(False)  # BatchNorm must keep its moving statistics; Dropout must stay off

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """float32 [N, 5] class probabilities (CLASSES order) of [N, 3, 299, 299] RGB in [0, 1] (``nsfwjs_input``)."""
        if tuple(x.shape[-2:]) != (NSFWJS_SIZE, NSFWJS_SIZE):
            raise ValueError(f"the classifier takes {NSFWJS_SIZE}x{NSFWJS_SIZE} inputs, got {tuple(x.shape)}")
        (out,) = self._run(x, self.graph.output_names, "32").values()
        return out

    @torch.no_grad()
    def layers(self, x: torch.Tensor, names: Sequence[str], precision: str = "32") -> dict[str, torch.Tensor]:
        """The named layers' outputs ([N, C, H, W] for convolutional ones), in one forward pass."""
        return self._run(x, names, precision)

    @torch.no_grad()
    def pooled(
        self, x: torch.Tensor, names: Sequence[str], pooling: str = "avg", precision: str = "32"
    ) -> dict[str, torch.Tensor]:
        """Each named layer's output pooled over space (``avg`` or ``max``): {name: float32 [N, C]}.

        ``precision`` "bf16" runs under bfloat16 autocast: 2.8x faster on this CPU (AVX-512 BF16), and
        within 0.6% of float32 (relative L2 error of mixed2..mixed5 features, 16 posters)."""
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        out = self._run(x, names, precision)
        return {name: pool(t, pooling).float() for name, t in out.items()}

    def _run(self, x: torch.Tensor, names: Sequence[str], precision: str) -> dict[str, torch.Tensor]:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        device = next(self.parameters()).device
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        # NNPACK cannot start on this CPU and would warn once per convolution.
        with torch.backends.nnpack.flags(enabled=False), torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=precision == "bf16"
        ):
            return self.graph(x, names)


def resolve_precision(choice: str, device: torch.device | str = "cpu") -> str:
    """``auto``: bf16 on CUDA and on a CPU whose oneDNN has bf16 kernels (AVX-512 BF16, AMX); else 32."""
    if choice != "auto":
        if choice not in PRECISIONS:
            raise ValueError(f"precision must be auto or one of {PRECISIONS}, got {choice!r}")
        return choice
    if torch.device(device).type == "cuda":
        return "bf16"
    try:
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "32"
    except (AttributeError, RuntimeError):
        return "32"


def pool(t: torch.Tensor, pooling: str) -> torch.Tensor:
    if t.dim() != 4:
        return t
    return t.mean(dim=(2, 3)) if pooling == "avg" else t.amax(dim=(2, 3))


def load_teacher(package_dir: str | os.PathLike | None = None) -> Teacher:
    """The teacher from node_modules/nsfwjs (or ``package_dir``, or $MARQUEE_NSFWJS); float32, eval mode."""
    files = read_inception_v3(package_dir)
    return Teacher(KerasGraph(files.topology, files.weights))


def nsfwjs_input(rgb: np.ndarray) -> torch.Tensor:
    """nsfwjs's preprocessing of one decoded uint8 [H, W, 3] RGB image: [1, 3, 299, 299] in [0, 1].

    Scaled first, then resized (bilinear, align corners, no antialiasing), in float32, as nsfwjs's
    ``infer`` does with ``tf.image.resizeBilinear(x / 255, [299, 299], true)``.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 [H, W, 3] pixels, got {rgb.dtype} {rgb.shape}")
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().unsqueeze(0) / 255.0
    if tuple(x.shape[-2:]) == (NSFWJS_SIZE, NSFWJS_SIZE):
        return x
    return F.interpolate(x, size=(NSFWJS_SIZE, NSFWJS_SIZE), mode="bilinear", align_corners=True)


def feature_spec(width: int, height: int, input_range: str = "keras") -> dict[str, Any]:
    """The training package's preprocessing spec (Lanczos-3 fill resize) scaled for the teacher's features.

    ``keras``: [-1, 1], what the ImageNet layers were trained on; ``nsfwjs``: [0, 1], what nsfwjs feeds.
    """
    spec = default_spec(width, height)
    if input_range == "keras":
        spec["mean"], spec["std"] = [0.5] * 3, [0.5] * 3
    elif input_range == "nsfwjs":
        spec["mean"], spec["std"] = [0.0] * 3, [1.0] * 3
    else:
        raise ValueError(f"input_range must be 'keras' or 'nsfwjs', got {input_range!r}")
    return spec
