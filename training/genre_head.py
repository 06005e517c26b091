"""The genre head: a calibrated multi-label genre classifier on the served embedding.

One logistic regression per genre on the unit embedding (``logit = W e + b``), fitted on ``train``
by full-batch L-BFGS with an L2 penalty chosen on ``val`` by mAP; then, on ``val``, a Platt scaling
per genre (``p = sigmoid(a * logit + c)``, pulled towards a = 1, c = 0 so that a genre with few val
posters keeps its raw probabilities) and a decision threshold per genre (the one that maximises
that genre's F1 on val; genres with fewer than MIN_THRESHOLD_POSITIVES val posters take the one
threshold that maximises micro F1 over all genres).

The head is a small matrix, so it ships in model.json (``genre_head``, format HEAD_FORMAT) and the
server applies it to the embedding it already computes (src/search/genre-head.ts): no second ONNX
output, and the int8 variant of a version shares its head. ``head_metrics`` is the one Python
implementation of the head's figures (mAP, mean AUC, micro and macro F1 of the predicted sets,
expected calibration error); src/eval/ has the server's.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

HEAD_FORMAT = "marquee-genre-head/1"
L2_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # per-sample penalty on W (the embedding is unit length)
PLATT_PRIOR = 1.0  # strength of the pull of (a, c) towards (1, 0), in units of val posters
MIN_THRESHOLD_POSITIVES = 5
ECE_BINS = 15


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float, steps: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [C, D], b [C]) minimising mean binary cross-entropy + l2 * |W|^2, every genre at once."""
    x, y = x.double(), y.double()
    w = torch.zeros(y.shape[1], x.shape[1], dtype=torch.float64, requires_grad=True)
    prior = y.mean(dim=0).clamp(1e-4, 1 - 1e-4)
    b = torch.log(prior / (1 - prior)).clone().requires_grad_(True)  # start at each genre's base rate
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w.T + b, y) * y.shape[1] + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().float(), b.detach().float()


def fit_platt(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per genre (a, c) of sigmoid(a * logit + c) on held-out logits, with a weak prior at (1, 0)."""
    logits, y = logits.double(), y.double()
    a = torch.ones(y.shape[1], dtype=torch.float64, requires_grad=True)
    c = torch.zeros(y.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a, c], lr=1, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        nll = torch.nn.functional.binary_cross_entropy_with_logits(logits * a + c, y, reduction="sum")
        loss = nll + PLATT_PRIOR * (((a - 1) ** 2).sum() + (c**2).sum())
        loss.backward()
        return loss

    opt.step(closure)
    return a.detach().float(), c.detach().float()


def probabilities(head: dict[str, Any], x: torch.Tensor | np.ndarray) -> np.ndarray:
    """[N, C] calibrated probabilities of unit embeddings under a head as stored in model.json."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    w = torch.tensor(head["weight"], dtype=torch.float32)
    b = torch.tensor(head["bias"], dtype=torch.float32)
    a = torch.tensor(head["calibration"]["scale"], dtype=torch.float32)
    c = torch.tensor(head["calibration"]["offset"], dtype=torch.float32)
    return torch.sigmoid((x @ w.T + b) * a + c).numpy()


def choose_thresholds(probs: np.ndarray, y: np.ndarray) -> tuple[list[float], float]:
    """(per-genre thresholds, the shared one): F1-maximising on held-out probabilities."""
    candidates = np.round(np.arange(0.02, 0.96, 0.01), 2)
    micro = [_f1(*_counts(probs >= t, y)) for t in candidates]
    shared = float(candidates[int(np.argmax(micro))])
    thresholds = []
    for c in range(y.shape[1]):
        if y[:, c].sum() < MIN_THRESHOLD_POSITIVES:
            thresholds.append(shared)
            continue
        scores = [_f1(*_counts(probs[:, c] >= t, y[:, c])) for t in candidates]
        thresholds.append(float(candidates[int(np.argmax(scores))]))
    return thresholds, shared


def fit_genre_head(
    train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, classes: Sequence[str]
) -> dict[str, Any]:
    """The head as model.json stores it, with its val figures under ``fit``."""
    best: tuple[float, float, torch.Tensor, torch.Tensor] | None = None
    grid = {}
    for l2 in L2_GRID:
        w, b = fit_logistic(train_x, train_y, l2)
        figure = head_metrics(torch.sigmoid(val_x.float() @ w.T + b).numpy(), val_y.numpy())["map"]
        grid[str(l2)] = figure
        if figure is not None and (best is None or figure > best[0]):
            best = (figure, l2, w, b)
    if best is None:
        raise ValueError("no genre has both a positive and a negative val poster: the head cannot be chosen")
    _, l2, w, b = best
    scale, offset = fit_platt(val_x.float() @ w.T + b, val_y)
    head = {
        "format": HEAD_FORMAT,
        "classes": list(classes),
        "weight": _rounded(w),
        "bias": _rounded(b),
        "calibration": {"method": "platt", "scale": _rounded(scale), "offset": _rounded(offset)},
    }
    probs = probabilities(head, val_x)
    thresholds, shared = choose_thresholds(probs, val_y.numpy())
    head["thresholds"] = thresholds
    head["fit"] = {
        "l2": l2,
        "l2_grid_val_map": grid,
        "shared_threshold": shared,
        "train": len(train_x),
        "val": len(val_x),
        "val_metrics": head_metrics(probs, val_y.numpy(), np.array(thresholds)),
    }
    return head


def head_metrics(probs: np.ndarray, targets: np.ndarray, thresholds: np.ndarray | None = None) -> dict[str, Any]:
    """mAP and mean AUC over the genres with a positive and a negative; with thresholds, the predicted
    sets' micro and macro F1 (macro over the same genres) and the expected calibration error."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    t = targets > 0
    ranked = [c for c in range(t.shape[1]) if 0 < t[:, c].sum() < len(t)]
    out: dict[str, Any] = {
        "map": round(float(np.mean([average_precision_score(t[:, c], probs[:, c]) for c in ranked])), 6) if ranked else None,
        "auc": round(float(np.mean([roc_auc_score(t[:, c], probs[:, c]) for c in ranked])), 6) if ranked else None,
        "ece": round(expected_calibration_error(probs, t), 6),
    }
    if thresholds is not None:
        predicted = probs >= thresholds[None, :]
        out["f1_micro"] = round(_f1(*_counts(predicted, t)), 6)
        out["f1_macro"] = round(float(np.mean([_f1(*_counts(predicted[:, c], t[:, c])) for c in ranked])), 6) if ranked else None
    return out


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """Over every (poster, genre) pair: the share-weighted mean |mean probability - positive rate| per equal-width bin."""
    p, y = probs.reshape(-1), (targets > 0).reshape(-1).astype(np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for i in range(bins):
        mask = which == i
        if mask.any():
            total += mask.sum() * abs(p[mask].mean() - y[mask].mean())
    return float(total / len(p))


def _counts(predicted: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    truth = truth > 0
    return int((predicted & truth).sum()), int((predicted & ~truth).sum()), int((~predicted & truth).sum())


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _rounded(t: torch.Tensor) -> list:
    """Six significant digits: model.json stays small and the served probabilities move by < 1e-5."""
    return np.vectorize(lambda v: float(f"{v:.6g}"))(t.numpy()).tolist()
