"""A Keras functional model (its JSON config and weights) interpreted as a PyTorch module, for inference.

Built for the Keras 2.2.4 layers-model of nsfwjs's InceptionV3 (training.teacher), but generic over the
layers it has and a few neighbours: InputLayer, Conv2D, BatchNormalization, Activation, MaxPooling2D,
AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, Concatenate, Add, ZeroPadding2D, Flatten,
Dense, Dropout. Anything else raises KerasGraphError naming the layer.

Keras runs channels-last; this module runs NCHW and converts what depends on it: Conv2D kernels
[kh, kw, in, out] -> [out, in, kh, kw], Dense kernels [in, out] -> [out, in], channel axes, and Flatten
(which flattens in NHWC order so a following Dense sees Keras's order). ``same`` padding is TensorFlow's:
ceil(in / stride) outputs, the padding split with the extra pixel after (bottom/right) when it is odd,
which is not symmetric for strided windows; ``same`` average pooling divides by the in-bounds count
only, as TensorFlow does. Inference only: BatchNormalization uses its moving statistics, Dropout is
the identity.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class KerasGraphError(ValueError):
    pass


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda x: x,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "elu": F.elu,
    "selu": F.selu,
    "softplus": F.softplus,
    "relu6": F.relu6,
    "softmax": lambda x: torch.softmax(x, dim=1),  # after a Dense: [N, units]
}


def _activation(name: str, layer: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in ACTIVATIONS:
        raise KerasGraphError(f"layer {layer}: activation {name!r} not supported")
    return ACTIVATIONS[name]


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one spatial dimension: (before, after)."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _pads(x: torch.Tensor, kernel, stride, dilation=(1, 1)) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) 'same' padding for an NCHW tensor."""
    top, bottom = same_padding(x.shape[2], kernel[0], stride[0], dilation[0])
    left, right = same_padding(x.shape[3], kernel[1], stride[1], dilation[1])
    return top, bottom, left, right


def _channel_axis(axis: int, layer: str) -> int:
    if axis in (-1, 3):
        return 1
    raise KerasGraphError(f"layer {layer}: axis {axis} (only the channel axis of channels_last data)")


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _check_channels_last(cfg: Mapping[str, Any], layer: str) -> None:
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise KerasGraphError(f"layer {layer}: data_format {cfg['data_format']!r} (channels_last only)")


class Conv2D(nn.Module):
    def __init__(self, name: str, cfg: Mapping[str, Any], weights: Mapping[str, np.ndarray]):
        super().__init__()
        _check_channels_last(cfg, name)
        kernel = weights[f"{name}/kernel"]  # [kh, kw, in, out]
        self.weight = nn.Parameter(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))), False)
        self.bias = nn.Parameter(torch.from_numpy(weights[f"{name}/bias"].copy()), False) if cfg["use_bias"] else None
        self.kernel, self.stride = _pair(cfg["kernel_size"]), _pair(cfg["strides"])
        self.dilation = _pair(cfg.get("dilation_rate", 1))
        self.padding = cfg["padding"]
        if self.padding not in ("same", "valid"):
            raise KerasGraphError(f"layer {name}: padding {self.padding!r}")
        self.activation = _activation(cfg.get("activation", "linear"), name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad: tuple[int, int] | int = 0
        if self.padding == "same":
            top, bottom, left, right = _pads(x, self.kernel, self.stride, self.dilation)
            if top == bottom and left == right:
                pad = (top, left)
            else:
                x = F.pad(x, (left, right, top, bottom))
        y = F.conv2d(x, self.weight, self.bias, self.stride, pad, self.dilation)
        return self.activation(y)


class BatchNormalization(nn.Module):
    def __init__(self, name: str, cfg: Mapping[str, Any], weights: Mapping[str, np.ndarray]):
        super().__init__()
        self.axis = _channel_axis(cfg.get("axis", -1), name)
        mean = torch.from_numpy(weights[f"{name}/moving_mean"].copy())
        self.register_buffer("mean", mean)
        self.register_buffer("var", torch.from_numpy(weights[f"{name}/moving_variance"].copy()))
        ones, zeros = torch.ones_like(mean), torch.zeros_like(mean)
        self.register_buffer("gamma", torch.from_numpy(weights[f"{name}/gamma"].copy()) if cfg["scale"] else ones)
        self.register_buffer("beta", torch.from_numpy(weights[f"{name}/beta"].copy()) if cfg["center"] else zeros)
        self.eps = float(cfg["epsilon"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.mean, self.var, self.gamma, self.beta, False, 0.0, self.eps)


class Pool2D(nn.Module):
    def __init__(self, name: str, cfg: Mapping[str, Any], kind: str):
        super().__init__()
        _check_channels_last(cfg, name)
        self.kind = kind
        self.kernel = _pair(cfg["pool_size"])
        self.stride = _pair(cfg["strides"] if cfg.get("strides") is not None else cfg["pool_size"])
        self.padding = cfg["padding"]
        if self.padding not in ("same", "valid"):
            raise KerasGraphError(f"layer {name}: padding {self.padding!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "valid":
            if self.kind == "max":
                return F.max_pool2d(x, self.kernel, self.stride)
            return F.avg_pool2d(x, self.kernel, self.stride)
        top, bottom, left, right = _pads(x, self.kernel, self.stride)
        symmetric = top == bottom and left == right and top <= self.kernel[0] // 2 and left <= self.kernel[1] // 2
        if self.kind == "max":
            if symmetric:
                return F.max_pool2d(x, self.kernel, self.stride, (top, left))
            return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=-math.inf), self.kernel, self.stride)
        if symmetric:
            return F.avg_pool2d(x, self.kernel, self.stride, (top, left), count_include_pad=False)
        # TensorFlow divides by the number of in-bounds values under the window.
        ones = torch.ones_like(x[:1, :1])
        total = F.avg_pool2d(F.pad(x, (left, right, top, bottom)), self.kernel, self.stride, divisor_override=1)
        count = F.avg_pool2d(F.pad(ones, (left, right, top, bottom)), self.kernel, self.stride, divisor_override=1)
        return total / count


class Dense(nn.Module):
    def __init__(self, name: str, cfg: Mapping[str, Any], weights: Mapping[str, np.ndarray]):
        super().__init__()
        self.weight = nn.Parameter(torch.from_numpy(np.ascontiguousarray(weights[f"{name}/kernel"].T)), False)
        self.bias = nn.Parameter(torch.from_numpy(weights[f"{name}/bias"].copy()), False) if cfg["use_bias"] else None
        self.activation = _activation(cfg.get("activation", "linear"), name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise KerasGraphError("Dense on a tensor of rank other than 2 is not supported")
        return self.activation(F.linear(x, self.weight, self.bias))


class Activation(nn.Module):
    def __init__(self, name: str, cfg: Mapping[str, Any]):
        super().__init__()
        self.fn = _activation(cfg["activation"], name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.permute(0, 2, 3, 1) if x.dim() == 4 else x).flatten(1)  # Keras flattens channels-last


class GlobalPool2D(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if self.kind == "avg" else x.amax(dim=(2, 3))


class ZeroPadding2D(nn.Module):
    def __init__(self, name: str, cfg: Mapping[str, Any]):
        super().__init__()
        _check_channels_last(cfg, name)
        p = cfg["padding"]
        (top, bottom), (left, right) = (
            ((p, p), (p, p)) if isinstance(p, int) else tuple(_pair(v) for v in p)  # type: ignore[misc]
        )
        self.pads = (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads)


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Merge(nn.Module):
    """Concatenate (on the channel axis) or Add."""

    def __init__(self, kind: str, axis: int = 1):
        super().__init__()
        self.kind, self.axis = kind, axis

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.kind == "concat":
            return torch.cat(xs, dim=self.axis)
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


def build_layer(class_name: str, name: str, cfg: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> nn.Module:
    if class_name == "Conv2D":
        return Conv2D(name, cfg, weights)
    if class_name == "BatchNormalization":
        return BatchNormalization(name, cfg, weights)
    if class_name == "Activation":
        return Activation(name, cfg)
    if class_name in ("MaxPooling2D", "AveragePooling2D"):
        return Pool2D(name, cfg, "max" if class_name == "MaxPooling2D" else "avg")
    if class_name in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        _check_channels_last(cfg, name)
        return GlobalPool2D("avg" if class_name == "GlobalAveragePooling2D" else "max")
    if class_name == "Concatenate":
        return Merge("concat", _channel_axis(cfg.get("axis", -1), name))
    if class_name == "Add":
        return Merge("add")
    if class_name == "ZeroPadding2D":
        return ZeroPadding2D(name, cfg)
    if class_name == "Flatten":
        _check_channels_last(cfg, name)
        return Flatten()
    if class_name == "Dense":
        return Dense(name, cfg, weights)
    if class_name == "Dropout":
        return Identity()
    raise KerasGraphError(f"layer {name}: Keras layer class {class_name!r} not supported")


class KerasGraph(nn.Module):
    """The model: ``forward(x, outputs)`` takes the input as NCHW float32 and returns the named layers' outputs."""

    def __init__(self, topology: Mapping[str, Any], weights: Mapping[str, np.ndarray]):
        super().__init__()
        model = topology.get("model_config", topology)
        if model.get("class_name") not in ("Model", "Functional"):
            raise KerasGraphError(f"expected a functional Model, got {model.get('class_name')!r}")
        config = model["config"]
        if len(config["input_layers"]) != 1:
            raise KerasGraphError("only models with one input are supported")
        self.input_name = config["input_layers"][0][0]
        self.output_names = [o[0] for o in config["output_layers"]]
        self.inbound: dict[str, list[str]] = {}
        self.order: list[str] = []  # the layers in the config's order (topological for Keras models)
        self.layer_modules = nn.ModuleDict()
        used: set[str] = set()
        for layer in config["layers"]:
            name, class_name = layer["name"], layer["class_name"]
            nodes = layer["inbound_nodes"]
            if len(nodes) > 1:
                raise KerasGraphError(f"layer {name} is called {len(nodes)} times (shared layers not supported)")
            sources = [entry[0] for entry in nodes[0]] if nodes else []
            if any(entry[1] != 0 or entry[2] != 0 for entry in (nodes[0] if nodes else [])):
                raise KerasGraphError(f"layer {name}: inputs from other nodes or tensors not supported")
            for s in sources:
                if s not in self.inbound:
                    raise KerasGraphError(f"layer {name}: input {s!r} is not an earlier layer")
            self.inbound[name] = sources
            self.order.append(name)
            if class_name == "InputLayer":
                continue
            self.layer_modules[name] = build_layer(class_name, name, layer["config"], weights)
            used.update(k for k in weights if k.startswith(f"{name}/"))
        unused = sorted(set(weights) - used)
        if unused:
            raise KerasGraphError(f"{len(unused)} weights belong to no layer, first: {unused[0]}")
        self._plans: dict[tuple[str, ...], list[str]] = {}
        self.eval()

    @property
    def layer_names(self) -> list[str]:
        return list(self.order)

    def _plan(self, outputs: tuple[str, ...]) -> list[str]:
        """The layers needed for ``outputs``, in execution order."""
        if outputs not in self._plans:
            unknown = [o for o in outputs if o not in self.inbound]
            if unknown:
                raise KerasGraphError(f"no layer named {unknown[0]!r}")
            needed: set[str] = set()
            stack = list(outputs)
            while stack:
                name = stack.pop()
                if name not in needed:
                    needed.add(name)
                    stack.extend(self.inbound[name])
            self._plans[outputs] = [n for n in self.order if n in needed and n != self.input_name]
        return self._plans[outputs]

    def forward(self, x: torch.Tensor, outputs: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = tuple(outputs) if outputs is not None else tuple(self.output_names)
        plan = self._plan(wanted)
        # Free each tensor after its last consumer: the full graph's activations would not fit otherwise.
        last_use: dict[str, int] = {}
        for step, name in enumerate(plan):
            for s in self.inbound[name]:
                last_use[s] = step
        values: dict[str, torch.Tensor] = {self.input_name: x}
        for step, name in enumerate(plan):
            values[name] = self.layer_modules[name](*(values[s] for s in self.inbound[name]))
            for s in self.inbound[name]:
                if last_use[s] == step and s not in wanted:
                    values.pop(s, None)
        return {name: values[name] for name in wanted}
