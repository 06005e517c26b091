"""Export the embedding network to a single self-contained ONNX file and verify it with onnxruntime.

Uses torch.onnx's torch.export-based ("dynamo") exporter, torch's default since 2.9; the
TorchScript exporter (dynamo=False) still works in 2.14 but is deprecated.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np
import onnx
import torch
from torch import nn

INPUT_NAME = "image"
OUTPUT_NAME = "embedding"


class OnnxVerificationError(RuntimeError):
    pass


def export_onnx(model: nn.Module, path: str | os.PathLike, width: int, height: int, opset: int | None = None) -> int:
    """Write ``model`` (eval mode) to ``path``: input ``image`` [batch,3,H,W], output ``embedding`` [batch,D].

    All weights are stored inside the file (no external data). Returns the ONNX opset used.
    """
    model.eval()
    example = torch.zeros(2, 3, height, width)  # batch 2 so the batch dimension is not specialised
    batch = torch.export.Dim("batch", min=1)
    # The exporter prints progress on stdout; stdout is reserved for JSON events.
    with contextlib.redirect_stdout(sys.stderr), torch.no_grad():
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"image": {0: batch}},
            opset_version=opset,
            external_data=False,
            optimize=True,
            verbose=False,
        )
        program.save(os.fspath(path), external_data=False)
    proto = onnx.load(os.fspath(path), load_external_data=False)
    check_onnx_graph(proto, width, height)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def check_onnx_graph(proto: onnx.ModelProto, width: int, height: int) -> None:
    """The contract the server relies on: names, shapes, symbolic batch, no external data."""
    onnx.checker.check_model(proto)
    ins, outs = list(proto.graph.input), list(proto.graph.output)
    if [i.name for i in ins] != [INPUT_NAME] or [o.name for o in outs] != [OUTPUT_NAME]:
        raise OnnxVerificationError(
            f"unexpected graph I/O: inputs {[i.name for i in ins]}, outputs {[o.name for o in outs]}"
        )
    dims = ins[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[0].dim_param or [d.dim_value for d in dims[1:]] != [3, height, width]:
        raise OnnxVerificationError(f"input shape is not [batch,3,{height},{width}]: {dims}")
    if not outs[0].type.tensor_type.shape.dim[0].dim_param:
        raise OnnxVerificationError("output batch dimension is not dynamic")
    for t in proto.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise OnnxVerificationError(f"initializer {t.name} uses external data")


def onnx_embed(path: str | os.PathLike, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]


def verify_onnx(
    model: nn.Module, path: str | os.PathLike, batch: torch.Tensor, min_cosine: float = 0.9999
) -> dict[str, float]:
    """Compare onnxruntime with PyTorch eager at batch 1 and the full batch; raise if they disagree."""
    model.eval()
    with torch.no_grad():
        ref = model(batch).numpy()
    results = {}
    for name, x, r in (("batch1", batch[:1], ref[:1]), (f"batch{len(batch)}", batch, ref)):
        got = onnx_embed(path, x.numpy())
        if got.shape != r.shape:
            raise OnnxVerificationError(f"ONNX output shape {got.shape} != PyTorch {r.shape} at {name}")
        norms = np.linalg.norm(got, axis=1)
        cos = np.sum(got * r, axis=1) / (norms * np.linalg.norm(r, axis=1))
        if not np.all(np.abs(norms - 1.0) < 1e-3):
            raise OnnxVerificationError(f"ONNX embeddings are not unit-norm at {name}: {norms.tolist()}")
        if not np.all(cos >= min_cosine):
            raise OnnxVerificationError(
                f"ONNX output differs from PyTorch at {name}: cosine {cos.tolist()} < {min_cosine}"
            )
        results[name] = float(cos.min())
    return results
