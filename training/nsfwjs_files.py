"""Reads the InceptionV3 that the npm package nsfwjs ships, straight from its files in node_modules.

nsfwjs 4.4.0 bundles each model as browserify JavaScript: ``dist/models/inception_v3/model.min.js``
exports a Keras 2.2.4 layers-model (``modelTopology`` + ``weightsManifest``) as a JavaScript object
literal, and ``group1-shard{i}of6.min.js`` export the weights as base64 strings. Concatenated in
manifest order, the shards hold one byte per value; each tensor has its own affine quantisation
(value = min + scale * byte, float32), as TensorFlow.js decodes it. Nothing here runs JavaScript.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

NSFWJS_VERSION = "4.4.0"
MODEL_SUBDIR = Path("dist") / "models" / "inception_v3"
REPO = Path(__file__).resolve().parents[1]


class TeacherFilesError(RuntimeError):
    """The nsfwjs files are missing or not what this reader knows."""


@dataclass(frozen=True)
class KerasModelFiles:
    topology: dict[str, Any]  # modelTopology: keras_version, model_config (class_name Model, config.layers ...)
    weights: dict[str, np.ndarray]  # "conv2d_1/kernel" -> float32 array in Keras layout
    source: Path  # the model directory read


def nsfwjs_dir(path: str | os.PathLike | None = None) -> Path:
    """The nsfwjs package directory: ``path``, else $MARQUEE_NSFWJS, else the repository's node_modules/nsfwjs."""
    chosen = path or os.environ.get("MARQUEE_NSFWJS") or REPO / "node_modules" / "nsfwjs"
    return Path(chosen)


def model_files_sha256(package_dir: str | os.PathLike | None = None) -> str:
    """SHA-256 over the model's files (names and bytes): what a cache of the teacher's outputs is keyed by."""
    model_dir = nsfwjs_dir(package_dir) / MODEL_SUBDIR
    files = sorted(model_dir.glob("*.min.js"))
    if not (model_dir / "model.min.js").is_file():
        raise TeacherFilesError(f"{model_dir}/model.min.js not found: run `npm install` (nsfwjs@{NSFWJS_VERSION})")
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\n".encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def read_inception_v3(package_dir: str | os.PathLike | None = None) -> KerasModelFiles:
    """Topology and dequantised weights of nsfwjs's InceptionV3."""
    root = nsfwjs_dir(package_dir)
    model_dir = root / MODEL_SUBDIR
    model_js = model_dir / "model.min.js"
    if not model_js.is_file():
        raise TeacherFilesError(f"{model_js} not found: run `npm install` (the package nsfwjs@{NSFWJS_VERSION})")
    model = parse_js_literal(_exported_literal(model_js.read_text(encoding="utf-8"), model_js))
    if not isinstance(model, dict) or "modelTopology" not in model or "weightsManifest" not in model:
        raise TeacherFilesError(f"{model_js}: expected an object with modelTopology and weightsManifest")
    blobs: list[bytes] = []
    specs: list[dict[str, Any]] = []
    for group in model["weightsManifest"]:
        for shard in group["paths"]:
            shard_js = model_dir / f"{shard}.min.js"
            if not shard_js.is_file():
                raise TeacherFilesError(f"{shard_js} not found")
            encoded = parse_js_literal(_exported_literal(shard_js.read_text(encoding="ascii"), shard_js))
            blobs.append(base64.b64decode(encoded, validate=True))
        specs.extend(group["weights"])
    return KerasModelFiles(model["modelTopology"], decode_weights(b"".join(blobs), specs), model_dir)


def decode_weights(data: bytes, specs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Split the concatenated weight bytes by the manifest's specs and dequantise each tensor."""
    out: dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        shape = tuple(int(d) for d in spec["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        q = spec.get("quantization")
        if spec.get("dtype") != "float32":
            raise TeacherFilesError(f"weight {spec['name']}: dtype {spec.get('dtype')!r}, expected float32")
        if q is None:
            raw = np.frombuffer(data, dtype="<f4", count=count, offset=offset)
            offset += 4 * count
            values = raw.astype(np.float32)
        elif q.get("dtype") == "uint8":
            raw = np.frombuffer(data, dtype=np.uint8, count=count, offset=offset)
            offset += count
            # TensorFlow.js: Float32Array(v * scale + min), the arithmetic in float64.
            values = (raw.astype(np.float64) * q["scale"] + q["min"]).astype(np.float32)
        else:
            raise TeacherFilesError(f"weight {spec['name']}: quantization {q!r} not supported (uint8 only)")
        out[spec["name"]] = values.reshape(shape)
    if offset != len(data):
        raise TeacherFilesError(f"weights manifest describes {offset} bytes, the shards hold {len(data)}")
    return out


def _exported_literal(source: str, path: Path) -> str:
    """The value assigned to ``module.exports`` inside a browserify bundle (its first module)."""
    match = re.search(r"\{1:\[function\(\w+,(\w+),\w+\)\{\1\.exports=", source)
    if match is None:
        raise TeacherFilesError(f"{path}: not a browserify bundle of one exported value")
    end = source.rfind("},{}]},{},[1])(1)")
    if end < match.end():
        raise TeacherFilesError(f"{path}: end of the exported value not found")
    return source[match.end() : end]


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<str>"[^"\\]*(?:\\.[^"\\]*)*")
  | (?P<num>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<bool>!0|!1|true|false)
  | (?P<null>null)
  | (?P<ident>[A-Za-z_$][\w$]*)
  | (?P<punct>[{}\[\]:,])
)""",
    re.VERBOSE,
)


def parse_js_literal(text: str) -> Any:
    """Parse a minified JavaScript literal (objects with bare keys, ``!0``/``!1``, ``.5``) into Python values."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise TeacherFilesError(f"unexpected JavaScript at offset {pos}: {text[pos:pos + 40]!r}")
        tokens.append((m.lastgroup or "", m.group(m.lastgroup or 0)))
        pos = m.end()
    value, end = _parse_value(tokens, 0)
    if end != len(tokens):
        raise TeacherFilesError(f"trailing JavaScript after the literal (token {end} of {len(tokens)})")
    return value


def _parse_value(tokens: list[tuple[str, str]], i: int) -> tuple[Any, int]:
    kind, text = tokens[i]
    if kind == "str":
        return _js_string(text), i + 1
    if kind == "num":
        return (float(text) if any(c in text for c in ".eE") else int(text)), i + 1
    if kind == "bool":
        return text in ("!0", "true"), i + 1
    if kind == "null":
        return None, i + 1
    if text == "[":
        items: list[Any] = []
        i += 1
        while tokens[i][1] != "]":
            item, i = _parse_value(tokens, i)
            items.append(item)
            if tokens[i][1] == ",":
                i += 1
        return items, i + 1
    if text == "{":
        obj: dict[str, Any] = {}
        i += 1
        while tokens[i][1] != "}":
            key_kind, key = tokens[i]
            if key_kind not in ("ident", "str", "num") or tokens[i + 1][1] != ":":
                raise TeacherFilesError(f"bad object key at token {i}: {key!r}")
            obj[_js_string(key) if key_kind == "str" else key], i = _parse_value(tokens, i + 2)
            if tokens[i][1] == ",":
                i += 1
        return obj, i + 1
    raise TeacherFilesError(f"unexpected token {text!r} at token {i}")


def _js_string(text: str) -> str:
    return json.loads(text)  # the bundles' strings use JSON's escapes only
