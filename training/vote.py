"""The genre vote of nearest neighbours, and how well its scores rank each genre (multi-label).

The server's vote (src/search/genre-vote.ts): each of the k nearest gallery posters votes for each
of its genres with weight (1 + cosine)/2; scores are normalised to sum to 1. For every genre the
queries are ranked by that genre's score: average precision and ROC AUC per genre, and their
macro means (mAP, mean AUC) over the genres that have at least one positive and one negative query.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def multi_hot(genre_lists: Sequence[Sequence[str]], classes: Sequence[str]) -> torch.Tensor:
    index = {c: i for i, c in enumerate(classes)}
    out = torch.zeros(len(genre_lists), len(classes), dtype=torch.float32)
    for row, genres in enumerate(genre_lists):
        for g in genres:
            if g in index:
                out[row, index[g]] = 1.0
    return out


def vote_scores(queries: torch.Tensor, gallery: torch.Tensor, gallery_targets: torch.Tensor, k: int) -> torch.Tensor:
    """[Q, C] genre scores of each query's k nearest gallery posters (rows sum to 1, or 0 with no genres)."""
    q, g = F.normalize(queries.float(), dim=1), F.normalize(gallery.float(), dim=1)
    out = []
    for i in range(0, len(q), 1024):
        sims, idx = torch.topk(q[i : i + 1024] @ g.T, min(k, len(g)), dim=1)
        weights = (1 + sims) / 2
        scores = torch.einsum("qk,qkc->qc", weights, gallery_targets[idx])
        out.append(scores / scores.sum(dim=1, keepdim=True).clamp(min=1e-12))
    return torch.cat(out)


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Non-interpolated AP (scikit-learn's definition: ties broken by taking the whole tied group)."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(positives, scores))


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positives, scores))


def vote_metrics(scores: torch.Tensor, targets: torch.Tensor, classes: Sequence[str]) -> dict:
    """{"map": .., "auc": .., "per_genre": {genre: {"ap", "auc", "positives"}}} over rankable genres."""
    s, t = scores.numpy(), targets.numpy() > 0
    per_genre = {}
    for c, name in enumerate(classes):
        pos = int(t[:, c].sum())
        if 0 < pos < len(t):
            per_genre[name] = {
                "ap": round(average_precision(s[:, c], t[:, c]), 6),
                "auc": round(roc_auc(s[:, c], t[:, c]), 6),
                "positives": pos,
            }
    if not per_genre:
        return {"map": None, "auc": None, "per_genre": {}}
    return {
        "map": round(float(np.mean([v["ap"] for v in per_genre.values()])), 6),
        "auc": round(float(np.mean([v["auc"] for v in per_genre.values()])), 6),
        "per_genre": per_genre,
    }
