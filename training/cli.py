"""Command line: ``python -m training <command> ...``.

Heavy imports (torch, onnx) happen inside the commands so ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Sequence

DESCRIPTION = """\
Marquee training tools. Commands print machine-readable JSON on stdout
(one object per line) and human-readable messages on stderr; exit status 0
on success, 1 on failure, 2 on bad arguments."""


def _int_in(lo: int, hi: int | None = None):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi if hi is not None else 'inf'}, got {v}")
        return v

    return parse


def _sha256(text: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise argparse.ArgumentTypeError("must be 64 hexadecimal characters (a SHA-256 digest)")
    return text.lower()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = _HelpFormatter

    p = sub.add_parser(
        "export-base",
        help="build the base (untrained) embedding model and export model.onnx/model.pt/model.json",
        formatter_class=fmt,
        description=(
            "Build ResNet-50 -> Linear(2048, D) -> L2 normalise, either from verified backbone "
            "weights (--weights/--weights-sha256) or from a seeded random initialisation whose "
            "BatchNorm statistics are calibrated on --calibrate train posters of the manifest. "
            "Writes DIR/model.onnx (input 'image' [batch,3,H,W], output 'embedding' [batch,D]), "
            "DIR/model.pt (PyTorch checkpoint) and DIR/model.json (metadata + preprocessing spec), "
            "after checking with onnxruntime that ONNX matches PyTorch. DIR appears atomically. "
            'Progress: JSON lines on stdout, e.g. {"event":"calibrate","done":64,"total":512}, '
            'ending with {"event":"done","out":DIR}.'
        ),
    )
    p.add_argument("--manifest", required=True, metavar="M.jsonl", help="dataset manifest (JSON Lines)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must not exist or be empty)")
    p.add_argument("--width", type=_int_in(16, 4096), default=160, help="model input width in pixels")
    p.add_argument("--height", type=_int_in(16, 4096), default=240, help="model input height in pixels")
    p.add_argument("--embedding-dim", type=_int_in(1, 65536), default=512, help="embedding size D")
    p.add_argument("--seed", type=_int_in(0), default=0, help="random initialisation / calibration sample seed")
    p.add_argument(
        "--calibrate",
        type=_int_in(0),
        default=512,
        metavar="N",
        help="train posters used to calibrate BatchNorm statistics (random init only; 0 = none)",
    )
    p.add_argument("--batch-size", type=_int_in(1), default=32, help="calibration batch size")
    p.add_argument(
        "--weights",
        metavar="PATH_OR_URL",
        help="torchvision ResNet-50 state dict for the backbone (fc.* ignored); URLs are cached "
        "under $MARQUEE_CACHE (default ~/.cache/marquee)",
    )
    p.add_argument("--weights-sha256", type=_sha256, metavar="HEX", help="required with --weights")
    p.add_argument("--opset", type=_int_in(18, 30), default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty DIR")
    p.set_defaults(func=cmd_export_base)

    p = sub.add_parser(
        "embed",
        help="embed images with a model.pt checkpoint (PyTorch eager, the Python serving path)",
        formatter_class=fmt,
        description=(
            "Preprocess IMAGE files with the checkpoint's preprocessing spec and run them through "
            'the PyTorch model. Prints one JSON line: {"embeddings":[[...],...]} in argument order.'
        ),
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR/model.pt", help="checkpoint file or model dir")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (JPEG, PNG, WebP, ...)")
    p.add_argument("--raw", metavar="FILE", help="preprocessed float32 NCHW tensor instead of IMAGEs")
    p.add_argument("--batch-size", type=_int_in(1), default=32, help="images per forward pass")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser(
        "preprocess",
        help="print or dump preprocessed input tensors (to compare with the server's preprocessing)",
        formatter_class=fmt,
        description=(
            "Apply the preprocessing (EXIF orientation, sRGB, flatten on white, Lanczos-3 fill "
            "resize, normalise) to IMAGE files. With --out, writes the [N,3,H,W] float32 tensor as "
            'raw little-endian bytes and prints {"shape":[...],"out":FILE}; otherwise prints '
            '{"shape":[...],"data":[...]} (flattened, NCHW).'
        ),
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--width", type=_int_in(1, 4096), default=160)
    p.add_argument("--height", type=_int_in(1, 4096), default=240)
    p.add_argument("--spec", metavar="JSON", help="full preprocessing spec as JSON (overrides --width/--height)")
    p.add_argument("--out", metavar="FILE", help="write raw float32 little-endian here")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser(
        "check-manifest",
        help="validate a dataset manifest and print per-split counts",
        formatter_class=fmt,
        description='Validate M.jsonl; print {"records":N,"splits":{...}}. Errors name the line.',
    )
    p.add_argument("manifest", metavar="M.jsonl")
    p.add_argument("--check-files", action="store_true", help="also require every image path to exist")
    p.set_defaults(func=cmd_check_manifest)
    return parser


def cmd_export_base(args: argparse.Namespace) -> int:
    from .events import emit
    from .export import ExportOptions, export_base

    if args.weights and not args.weights_sha256:
        raise UsageError("--weights requires --weights-sha256")
    if args.weights_sha256 and not args.weights:
        raise UsageError("--weights-sha256 given without --weights")
    opts = ExportOptions(
        manifest=args.manifest,
        out=args.out,
        width=args.width,
        height=args.height,
        embedding_dim=args.embedding_dim,
        seed=args.seed,
        calibrate=args.calibrate,
        batch_size=args.batch_size,
        weights=args.weights,
        weights_sha256=args.weights_sha256,
        opset=args.opset,
        force=args.force,
    )
    try:
        export_base(opts)
    except Exception as e:
        emit("error", message=str(e))
        raise
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from .embed import embed_images, embed_raw

    if bool(args.images) == bool(args.raw):
        raise UsageError("embed: give either IMAGE files or --raw FILE")
    if args.raw:
        vectors = embed_raw(args.checkpoint, args.raw)
    else:
        vectors = embed_images(args.checkpoint, args.images, args.batch_size)
    sys.stdout.write(json.dumps({"embeddings": vectors}, separators=(",", ":")) + "\n")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from .preprocess import default_spec, load_batch, validate_spec

    spec = validate_spec(json.loads(args.spec)) if args.spec else default_spec(args.width, args.height)
    batch = load_batch(args.images, spec).numpy()
    if args.out:
        batch.astype("<f4").tofile(args.out)
        print(json.dumps({"shape": list(batch.shape), "out": args.out}))
    else:
        print(json.dumps({"shape": list(batch.shape), "data": batch.reshape(-1).tolist()}))
    return 0


def cmd_check_manifest(args: argparse.Namespace) -> int:
    from collections import Counter

    from .manifest import read_manifest

    records = read_manifest(args.manifest, check_files=args.check_files)
    splits = Counter(r.split for r in records)
    print(json.dumps({"records": len(records), "splits": dict(sorted(splits.items()))}))
    return 0


class UsageError(Exception):
    pass


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except for options whose default is None/False (nothing to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False):
            return action.help or ""
        return super()._get_help_string(action)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        parser.error(str(e))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as e:
        # ManifestError, WeightsError, ExportError, OnnxVerificationError, bad images, ...
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
