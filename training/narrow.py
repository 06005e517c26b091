"""``narrow-weights``: an int8 model whose integer convolutions' weights fit in 7 bits.

onnxruntime's x86 kernels for uint8 activations and int8 weights differ by CPU. With AVX-512 VNNI
(``vpdpbusd``) each product is summed in 32 bits; with AVX2 only (``vpmaddubsw``, e.g. AMD Zen 1)
two products are first summed in a saturating 16-bit lane, so 255 x 127 x 2 = 64,770 overflows
and the same model gives other vectors there (cosine down to 0.96 on the default model). With
weights in [-64, 64] (255 x 64 x 2 = 32,640) no pair can saturate and every CPU computes the same
sums, so one shipped file of catalog embeddings serves them all.

New models get 7-bit weights from ``quantize`` (onnxruntime's ``reduce_range``); this narrows an
int8 model already made, when its float32 source is gone: each weight of a convolution that runs
on integer kernels (its input and its weight both dequantised) is halved, rounded half to even,
and its per-channel scale doubled; its int32 bias, whose scale is the input's times the weight's,
likewise. Convolutions on float inputs (the stem) keep their weights: they run in float32.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import events
from .export import _check_destination, _publish
from .weights import sha256_file


class NarrowError(RuntimeError):
    pass


def narrow_weights(model_dir: str, out: str, force: bool = False, emit=events.emit) -> Path:
    import onnx
    from onnx import numpy_helper

    src = Path(model_dir)
    meta = json.loads((src / "model.json").read_text(encoding="utf-8"))
    if meta.get("precision") != "int8":
        raise NarrowError(f"{src}: not an int8 model")
    target = Path(out).expanduser().resolve()
    _check_destination(target, force)
    model = onnx.load(str(src / "model.onnx"))
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    made_by = {o: n for n in graph.node for o in n.output}

    def dequantised(name: str):
        node = made_by.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    def halve(dq, dtype) -> None:
        values, scale = (numpy_helper.to_array(initializers[dq.input[i]]) for i in (0, 1))
        if len(dq.input) > 2 and np.any(numpy_helper.to_array(initializers[dq.input[2]])):
            raise NarrowError(f"{dq.name}: weights with a zero point other than 0")
        initializers[dq.input[0]].CopyFrom(numpy_helper.from_array(np.round(values / 2).astype(dtype), dq.input[0]))
        initializers[dq.input[1]].CopyFrom(numpy_helper.from_array((scale * 2).astype(scale.dtype), dq.input[1]))

    narrowed = 0
    for conv in (n for n in graph.node if n.op_type == "Conv"):
        weight = dequantised(conv.input[1])
        if dequantised(conv.input[0]) is None or weight is None or weight.input[0] not in initializers:
            continue
        if numpy_helper.to_array(initializers[weight.input[0]]).dtype != np.int8:
            raise NarrowError(f"{conv.name}: weights are not int8")
        halve(weight, np.int8)
        bias = dequantised(conv.input[2]) if len(conv.input) > 2 else None
        if bias is not None:
            halve(bias, np.int32)
        narrowed += 1
    if narrowed == 0:
        raise NarrowError(f"{src}: no convolution runs on integer kernels")

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        onnx.save(model, str(tmp / "model.onnx"))
        quantization = {**meta.get("quantization", {}), "weight_bits": 7, "narrowed_from_sha256": sha256_file(src / "model.onnx")}
        if "parity" in quantization:  # measured on the 8-bit weights, against float32
            quantization["parity_before_narrowing"] = quantization.pop("parity")
        (tmp / "model.json").write_text(json.dumps({**meta, "quantization": quantization}, indent=2) + "\n", encoding="utf-8")
        for f in tmp.iterdir():
            f.chmod(0o644)
        tmp.chmod(0o755)
        _publish(tmp, target, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    emit("done", out=str(target), narrowed=narrowed)
    return target
