"""Command line: ``python -m training <command> ...``.

Heavy imports (torch, onnx) happen inside the commands so ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import signal
import sys
import time
from typing import Sequence

DESCRIPTION = """\
Marquee training tools. Commands print machine-readable JSON on stdout
(one object per line) and human-readable messages on stderr; exit status 0
on success, 1 on failure, 2 on bad arguments."""

TRAIN_DESCRIPTION = """\
Fine-tune ResNet -> Linear -> L2 normalise with proxy-anchor loss (one proxy
per class; with --labels genres, the default, a poster is a positive of the
proxy of every one of its genres; the proxies in their own AdamW parameter
group), in a Lightning loop. Trains on the manifest's 'train' split, validates
on 'val' (queries) against 'train' (gallery) every --val-every epochs and after
the last, and keeps the epoch whose genre head ranks val posters best by genre
(head mAP: a logistic regression per genre fitted on the train embeddings).
The exported model carries its genre head (model.json genre_head: fitted on
train, Platt-calibrated and thresholded per genre on val; see fit-head).
The 'test' split is never read.

Recipes (--recipe; an option given explicitly overrides its recipe value):
  paper  the paper's (lr 1e-4 constant, 20 epochs, 1 frozen epoch, crops of
         70-100%% at the model's size); for CUDA and an ImageNet start
  cpu    trains the whole network on 2 CPU cores in under 90 minutes from a
         random start: random crops of 35-100%% of the poster resized to
         96x144 (--train-width/--train-height; the model serves at its own
         --width/--height), lr 2e-3 with 1 warm-up epoch and a cosine decay,
         proxies at 10x, no frozen epoch, validation every 5 epochs, 40 epochs
  auto   paper on CUDA, cpu otherwise

Inputs: each poster's server-rendered model input (the manifest's "input")
when its size is the model's, else the poster through the same preprocessing;
full mode holds them decoded in memory (when they fit) and adds a random crop
and flip per batch, in training only. Colour is never altered.

Runs on CUDA when present (DDP when several GPUs are visible), else on the
CPU; both with channels_last and bf16 autocast where the hardware has bf16
(--precision auto).

Writes, atomically (a temporary directory beside DIR, renamed at the end):
  DIR/model.onnx    input 'image' [batch,3,H,W] -> output 'embedding' [batch,D],
                    checked against PyTorch with onnxruntime (cosine >= 0.9999)
  DIR/model.pt      the best epoch's weights (for `embed`, or --init-from)
  DIR/model.json    the server's sidecar (format marquee-model/1) plus init,
                    init_source, mode, labels (the class list), metrics, training
  DIR/metrics.json  val Recall@1/3/8 and majority@1/3/5 (ties to the more
                    similar neighbour), micro, macro and per genre, and the
                    genre vote's mAP and AUC (k=5, 10), of the best epoch,
                    plus the per-epoch history
  DIR/last.ckpt     Lightning checkpoint of the last epoch, for --resume

Progress on stdout, one JSON object per line (epochs count from 1):
  {"event":"start",...}  {"event":"calibrate"|"features","done":..,"total":..}
  {"event":"epoch_start","epoch":1,"epochs":20,"steps":179,"backbone_frozen":true}
  {"event":"progress","epoch":1,"step":12,"steps":179,"loss":..,"img_per_s":..,"eta_s":..}
  {"event":"validation","epoch":1,"loss":..,"seconds":..,"metrics":{...}}
  {"event":"onnx"|"verify"|"checkpoint",...}
  {"event":"done","out":DIR,"best_epoch":3,"seconds":..}   or   {"event":"error","message":..}
Human-readable logs go to stderr. Exit status: 0 done, 1 failed, 2 bad
arguments, 143 stopped by SIGTERM (nothing is left at DIR)."""


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


def _float_in(lo: float, hi: float | None = None, *, open_lo: bool = False):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if v != v or v < lo or (open_lo and v == lo) or (hi is not None and v > hi):
            bounds = f"{'(' if open_lo else '['}{lo}, {hi if hi is not None else 'inf'}]"
            raise argparse.ArgumentTypeError(f"must be in {bounds}, got {v}")
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
        "quantize",
        help="write an int8 copy of a model directory, calibrated on catalog posters, checked against float32",
        formatter_class=fmt,
        description=(
            "Static int8 quantisation (QDQ; int8 weights per channel, uint8 activations; the convolutions only) "
            "of DIR/model.onnx with onnxruntime's tools, calibrated on --calibrate train posters of the manifest "
            "through the serving preprocessing. Writes OUT/model.onnx and OUT/model.json (precision int8, the "
            "settings, and parity with float32 on --check val posters: embedding cosine, top-8 overlap)."
        ),
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model directory (model.onnx + model.json)")
    p.add_argument("--manifest", required=True, metavar="M.jsonl", help="dataset manifest (JSON Lines)")
    p.add_argument("--out", required=True, metavar="OUT", help="output directory (must not exist or be empty)")
    p.add_argument("--calibrate", type=_int_in(1), default=256, metavar="N", help="train posters to calibrate on")
    p.add_argument("--check", type=_int_in(0), default=256, metavar="N", help="val posters to check parity on")
    p.add_argument("--batch-size", type=_int_in(1), default=32, help="posters per calibration batch")
    p.add_argument("--seed", type=_int_in(0), default=0, help="which posters are sampled")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty OUT")
    p.add_argument("--weight-bits", type=int, choices=(7, 8), default=7,
                   help="7: no 16-bit saturation on AVX2-only CPUs, so the same vectors on every CPU; 8: the full range")  # fmt: skip
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser(
        "narrow-weights",
        help="write a copy of an int8 model whose integer convolutions' weights fit in 7 bits (the same vectors on every CPU)",
        formatter_class=fmt,
        description=(
            "For an int8 model made with 8-bit weights whose float32 source is gone: halves the weights of every "
            "convolution on integer kernels (and their int32 biases) and doubles their scales, so that CPUs "
            "without VNNI (AVX2's saturating 16-bit pair sums) compute the vectors VNNI CPUs do. "
            "Writes OUT/model.onnx and OUT/model.json."
        ),
    )
    p.add_argument("--model", required=True, metavar="DIR", help="int8 model directory (model.onnx + model.json)")
    p.add_argument("--out", required=True, metavar="OUT", help="output directory (must not exist or be empty)")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty OUT")
    p.set_defaults(func=cmd_narrow_weights)

    p = sub.add_parser(
        "fit-head",
        help="fit a model directory's genre head (calibrated per-genre logistic regression) into its model.json",
        formatter_class=fmt,
        description=(
            "Embed the manifest's train and val posters with DIR/model.onnx, fit one logistic regression per "
            "genre on train (L2 chosen on val by mAP), calibrate each genre on val (Platt) and choose its "
            "decision threshold on val (F1), and store the head in DIR/model.json as genre_head. "
            "`train` does this itself; this command is for a model trained before heads existed."
        ),
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model directory (model.onnx + model.json)")
    p.add_argument("--manifest", required=True, metavar="M.jsonl", help="dataset manifest (JSON Lines)")
    p.set_defaults(func=cmd_fit_head)

    p = sub.add_parser(
        "teacher-features",
        help="compute (once) and cache the pretrained teacher's pooled features of every manifest poster",
        formatter_class=fmt,
        description=(
            "Run the teacher (nsfwjs's InceptionV3, read from node_modules/nsfwjs: its layers up to mixed5 are "
            "Keras's ImageNet weights) on every poster of the manifest, resized to WIDTHxHEIGHT by the training "
            "preprocessing and scaled to [-1, 1] (--input-range keras) or [0, 1] (nsfwjs), and store each "
            "--layer's output pooled over space, keyed by poster id and image SHA-256, in OUT (.npz). Posters "
            "already in OUT with the same picture, input configuration and weights are not computed again; a "
            "layer OUT lacks computes every poster again, for OUT's layers and the new one. Progress: "
            '{"event":"features","done":..,"total":..,"img_per_s":..}; ends with '
            '{"event":"done","out":OUT,"posters":N,"computed":..,"dims":{layer:C}}.'
        ),
    )
    p.add_argument("--manifest", required=True, metavar="M.jsonl", help="dataset manifest (JSON Lines)")
    p.add_argument("--layer", action="append", required=True, metavar="NAME",
                   help="a layer of the teacher, e.g. mixed2..mixed5 (repeat for several; one forward pass)")  # fmt: skip
    p.add_argument("--out", metavar="FILE.npz",
                   help="the cache file (default: one per input configuration under $MARQUEE_CACHE/teacher, "
                   "else ~/.cache/marquee/teacher)")  # fmt: skip
    p.add_argument("--pooling", choices=["avg", "max"], default="avg", help="pooling over space")
    p.add_argument("--width", type=_int_in(75, 1024), default=200, help="teacher input width")
    p.add_argument("--height", type=_int_in(75, 1024), default=300, help="teacher input height")
    p.add_argument("--input-range", choices=["keras", "nsfwjs"], default="keras",
                   help="keras: [-1, 1] (the ImageNet layers' own); nsfwjs: [0, 1] (what nsfwjs feeds)")  # fmt: skip
    p.add_argument("--split", action="append", choices=["train", "val", "test"],
                   help="only these splits (repeatable; default all)")  # fmt: skip
    p.add_argument("--batch-size", type=_int_in(1), default=32, help="posters per forward pass")
    p.add_argument("--workers", type=_int_in(0), default=1, help="data-loading processes")
    p.add_argument("--nsfwjs", metavar="DIR", help="the nsfwjs package (default: $MARQUEE_NSFWJS, else node_modules/nsfwjs)")
    p.add_argument("--precision", choices=["auto", "32", "bf16"], default="auto",
                   help="auto: bf16 autocast on CUDA and on CPUs with bf16 kernels (AVX-512 BF16, AMX), else float32")  # fmt: skip
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the teacher runs")
    p.add_argument("--threads", type=_int_in(1), help="torch intra-op threads (default: torch's)")
    p.set_defaults(func=cmd_teacher_features)

    p = sub.add_parser(
        "check-manifest",
        help="validate a dataset manifest and print per-split counts",
        formatter_class=fmt,
        description='Validate M.jsonl; print {"records":N,"splits":{...}}. Errors name the line.',
    )
    p.add_argument("manifest", metavar="M.jsonl")
    p.add_argument("--check-files", action="store_true", help="also require every image path to exist")
    p.set_defaults(func=cmd_check_manifest)

    p = sub.add_parser(
        "train",
        help="fine-tune an embedding model with proxy-anchor loss; write model.onnx/.pt/.json, metrics.json, last.ckpt",
        formatter_class=_RawHelpFormatter,
        description=TRAIN_DESCRIPTION,
    )
    g = p.add_argument_group("data and output")
    g.add_argument("--manifest", required=True, metavar="M.jsonl", help="dataset manifest (JSON Lines)")
    g.add_argument("--out", required=True, metavar="DIR", help="output directory (must not exist or be empty)")
    g.add_argument("--labels", choices=["genres", "single_genre"],
                   help="the classes of each poster: all its genres (multi-label; default) or the first only")  # fmt: skip
    g.add_argument("--force", action="store_true", help="replace an existing non-empty DIR")
    g = p.add_argument_group("initialisation (default: random, BatchNorm calibrated)")
    g.add_argument(
        "--init-from",
        metavar="DIR",
        help="a model directory with model.pt (e.g. the active model's); its input size, preprocessing "
        "and head are reused",
    )
    g.add_argument(
        "--weights",
        metavar="PATH_OR_URL",
        help="torchvision ResNet-50 (ImageNet) state dict for the backbone; needs --weights-sha256",
    )
    g.add_argument("--weights-sha256", type=_sha256, metavar="HEX", help="SHA-256 of --weights")
    g.add_argument(
        "--calibrate",
        type=_int_in(0),
        default=512,
        metavar="N",
        help="random init: train posters used to calibrate BatchNorm statistics",
    )
    g.add_argument("--seed", type=_int_in(0), help="random init, new head, proxies, batch order, crops (default 0)")
    g.add_argument("--neck", choices=["none", "bn"],
                   help="random init: 'bn' normalises the pooled features (BatchNorm) before the head")  # fmt: skip
    g.add_argument("--arch", choices=["resnet50", "resnet34", "resnet18"],
                   help="random init: the torchvision ResNet (default resnet50; with --init-from, the model's)")  # fmt: skip
    g.add_argument("--width", type=_int_in(16, 4096), help="input width (default: the init model's, else 160)")
    g.add_argument("--height", type=_int_in(16, 4096), help="input height (default: the init model's, else 240)")
    g.add_argument(
        "--embedding-dim",
        type=_int_in(1, 65536),
        help="embedding size (default: the init model's, else 512); a different size starts a new head",
    )
    g = p.add_argument_group("recipe (defaults: the chosen recipe's)")
    g.add_argument("--recipe", choices=["auto", "paper", "cpu"], default="auto",
                   help="named defaults for the options of this group (see above)")  # fmt: skip
    g.add_argument("--mode", choices=["full", "head"],
                   help="full: the whole network on augmented images; head: backbone frozen, features "
                   "computed once (unaugmented) and cached, only the head and proxies train (fast on CPU)")  # fmt: skip
    g.add_argument("--epochs", type=_int_in(1), metavar="N",
                   help="epochs to train up to (with --resume, default: the checkpoint's)")  # fmt: skip
    g.add_argument("--batch-size", type=_int_in(2), help="posters per step (last partial batch dropped)")
    g.add_argument("--lr", type=_float_in(0, open_lo=True), help="AdamW learning rate (the peak, with a schedule)")
    g.add_argument("--proxy-lr-multiplier", type=_float_in(0, open_lo=True),
                   help="the proxies' learning rate is lr times this (own AdamW parameter group)")  # fmt: skip
    g.add_argument("--weight-decay", type=_float_in(0), help="AdamW weight decay (all groups)")
    g.add_argument("--warmup-epochs", type=_int_in(0),
                   help="full mode: first epochs with the backbone frozen (head and proxies only)")  # fmt: skip
    g.add_argument("--schedule", choices=["constant", "cosine"],
                   help="learning rate: constant, or linear warm-up then cosine decay to 0, per step")  # fmt: skip
    g.add_argument("--lr-warmup-epochs", type=_float_in(0), metavar="E",
                   help="cosine schedule: epochs of linear warm-up (fractions allowed)")  # fmt: skip
    g.add_argument("--grad-clip", type=_float_in(0), help="gradient clipping threshold; 0 = off")
    g.add_argument("--grad-clip-algorithm", choices=["value", "norm"],
                   help="clip each gradient value (the proxy-anchor authors') or the total norm")  # fmt: skip
    g.add_argument("--margin", type=_float_in(0), help="proxy-anchor margin (delta)")
    g.add_argument("--alpha", type=_float_in(0, open_lo=True), help="proxy-anchor scale (alpha)")
    g.add_argument("--freeze-bn", action="store_true", default=None,
                   help="full mode: keep BatchNorm statistics and affine parameters fixed (the proxy-anchor "
                   "authors' choice with pretrained backbones)")  # fmt: skip
    g.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                   help="full mode: no random crop/flip (augmentation never applies to validation)")  # fmt: skip
    g.add_argument("--crop-scale", type=_float_in(0, 1, open_lo=True),
                   help="full mode: smallest area fraction of the random resized crop")  # fmt: skip
    g.add_argument("--train-width", type=_int_in(16, 4096),
                   help="full mode: width of the training crops (default: the model's input width)")  # fmt: skip
    g.add_argument("--train-height", type=_int_in(16, 4096), help="full mode: height of the training crops")
    g.add_argument("--teacher-layer", choices=["mixed0", "mixed1", "mixed2", "mixed3", "mixed4", "mixed5"],
                   help="distil from the pretrained teacher (nsfwjs's InceptionV3, read from node_modules/nsfwjs): "
                   "its features at this layer, average-pooled and cached once per poster, teach how the posters "
                   "of a batch relate (relational distillation beside proxy-anchor). Default: no teacher")  # fmt: skip
    g.add_argument("--teacher-weight", type=_float_in(0), metavar="W",
                   help="the distillation term's weight (default 1)")  # fmt: skip
    g.add_argument("--val-every", type=_int_in(1), metavar="N",
                   help="validate (and consider for the best epoch) every N epochs and after the last")  # fmt: skip
    g = p.add_argument_group("running")
    g.add_argument("--resume", metavar="CKPT",
                   help="continue from a last.ckpt: model, recipe, optimizer, epoch and best epoch come from it "
                   "(recipe and initialisation options are ignored); --epochs may extend the run")  # fmt: skip
    g.add_argument("--limit-batches", type=_int_in(1), metavar="N",
                   help="at most N training batches per epoch (tiny runs, benchmarks)")  # fmt: skip
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="cuda: DDP over all visible GPUs (or --devices of them)")  # fmt: skip
    g.add_argument("--devices", type=_int_in(1, 1024), metavar="N",
                   help="processes per node: GPUs on CUDA (default: all), CPU processes on a CPU (default: 1); "
                   "more than one in all trains with DDP (NCCL on GPUs, gloo on CPUs), the loss over the global batch")  # fmt: skip
    g.add_argument("--num-nodes", type=_int_in(1, 1024), default=1, metavar="M",
                   help="machines, each started with the same command and torch.distributed's MASTER_ADDR, "
                   "MASTER_PORT, NODE_RANK (Lightning's environment)")  # fmt: skip
    g.add_argument("--precision", choices=["auto", "32", "bf16"], default="auto",
                   help="auto: bf16 autocast on CUDA and on CPUs with bf16 kernels (AVX-512 BF16, AMX), else float32")  # fmt: skip
    g.add_argument("--data", choices=["auto", "memory", "disk"], default="auto",
                   help="full mode: hold decoded posters in memory (auto: when they fit in 4 GiB) or decode per batch")  # fmt: skip
    g.add_argument("--workers", type=_int_in(0), metavar="N",
                   help="data-loading processes (default: 1 on a 2-core CPU, up to 8 on CUDA)")  # fmt: skip
    g.add_argument("--cache-dir", metavar="DIR",
                   help="head-mode feature cache (default: $MARQUEE_CACHE/features, else "
                   "~/.cache/marquee/features)")  # fmt: skip
    g.add_argument("--progress-interval", type=_float_in(0), default=2.0, metavar="S",
                   help="seconds between progress events at most")  # fmt: skip
    g.add_argument("--opset", type=_int_in(18, 30), default=None, help="ONNX opset (default: the exporter's)")
    p.set_defaults(func=cmd_train)
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


def cmd_train(args: argparse.Namespace) -> int:
    from .events import bound_emit
    from .train import TrainOptions, train

    emit = bound_emit(sys.stdout)
    names = {f.name for f in dataclasses.fields(TrainOptions)}
    opts = TrainOptions(**{k: v for k, v in vars(args).items() if k in names})
    previous = signal.signal(signal.SIGTERM, _raise_cancelled)
    _sigterm_received.clear()
    try:
        # Libraries that print (Lightning, the ONNX exporter) must not interleave with the JSON lines.
        with contextlib.redirect_stdout(sys.stderr):
            train(opts, emit=emit)
    except BaseException as e:
        # SIGTERM to the whole process group may first surface as "DataLoader worker killed": still a cancellation.
        if not _sigterm_received and not isinstance(e, Cancelled):
            emit("error", message=str(e))
            raise
        emit("error", message="cancelled (SIGTERM)")
        print("cancelled (SIGTERM); nothing written", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


class Cancelled(Exception):
    """SIGTERM: the server cancels training jobs this way."""


_sigterm_received: list[bool] = []


def _raise_cancelled(signum, frame) -> None:
    _sigterm_received.append(True)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
    raise Cancelled()


def cmd_quantize(args: argparse.Namespace) -> int:
    from .events import emit
    from .quantize import QuantizeOptions, quantize

    names = {f.name for f in dataclasses.fields(QuantizeOptions)}
    try:
        quantize(QuantizeOptions(**{k: v for k, v in vars(args).items() if k in names}))
    except Exception as e:
        emit("error", message=str(e))
        raise
    return 0


def cmd_narrow_weights(args: argparse.Namespace) -> int:
    from .events import emit
    from .narrow import narrow_weights

    try:
        narrow_weights(args.model, args.out, args.force)
    except Exception as e:
        emit("error", message=str(e))
        raise
    return 0


def cmd_fit_head(args: argparse.Namespace) -> int:
    from . import events
    from .fit_head import fit_model_dir

    head = fit_model_dir(args.model, args.manifest, events.log)
    print(json.dumps({"event": "done", "model": args.model, **head["fit"]["val_metrics"]}))
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


def cmd_teacher_features(args: argparse.Namespace) -> int:
    import torch

    from .events import emit
    from .manifest import read_manifest
    from .teacher_features import TeacherFeatureSpec, teacher_features

    if args.threads:
        torch.set_num_threads(args.threads)
    records = read_manifest(args.manifest)
    if args.split:
        records = [r for r in records if r.split in args.split]
    layers = tuple(dict.fromkeys(args.layer))
    spec = TeacherFeatureSpec(layers, args.pooling, args.width, args.height, args.input_range, args.precision)
    last = [0.0]

    def progress(done: int, total: int, rate: float) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 2.0:
            last[0] = now
            emit("features", done=done, total=total, img_per_s=round(rate, 2))

    try:
        table, info = teacher_features(
            records, spec, args.out, package_dir=args.nsfwjs, batch_size=args.batch_size,
            workers=args.workers, device=args.device, on_progress=progress,
        )  # fmt: skip
    except Exception as e:
        emit("error", message=str(e))
        raise
    dims = {layer: table.dim(layer) for layer in layers}
    emit("done", out=info["file"], posters=len(records), computed=info["computed"], hits=info["hits"],
         seconds=info["seconds"], img_per_s=info["img_per_s"], precision=table.meta["spec"]["precision"],
         dims=dims)  # fmt: skip
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
    """Show defaults, except for options whose default is None and for flags (nothing to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.nargs == 0:  # `in (None, False)` would also hide a default of 0
            return action.help or ""
        return super()._get_help_string(action)


class _RawHelpFormatter(argparse.RawDescriptionHelpFormatter, _HelpFormatter):
    """Keeps the description's own line breaks (its example lines)."""


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
