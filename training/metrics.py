"""Retrieval quality of embeddings: Recall@k and majority@k, per genre and macro/micro.

Queries are searched in a separate gallery (the query is never in it) by cosine similarity.
Recall@k: one of the k nearest has the query's label. majority@k: the most common label among
the k nearest is the query's; a tie goes to the label whose best neighbour is more similar
(the server's rule, src/search/genre-vote.ts). Macro averages the per-genre figures over the
genres present among the queries; micro averages over queries.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

import torch
import torch.nn.functional as F

RECALL_KS = (1, 3, 8)
MAJORITY_KS = (1, 3, 5)


def neighbours(queries: torch.Tensor, gallery: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Indices [Q, k] of each query's k most similar gallery items, most similar first."""
    q = F.normalize(queries.float(), dim=1)
    g = F.normalize(gallery.float(), dim=1)
    k = min(k, len(g))
    out = [torch.topk(q[i : i + chunk] @ g.T, k, dim=1).indices for i in range(0, len(q), chunk)]
    return torch.cat(out) if out else torch.zeros(0, k, dtype=torch.int64)


def majority(labels: Sequence[str]) -> str:
    """Most common label; ties to the one seen first (``labels`` is ordered by similarity)."""
    counts = Counter(labels)
    top = max(counts.values())
    return next(label for label in labels if counts[label] == top)


def retrieval_metrics(
    queries: torch.Tensor,
    query_labels: Sequence[str],
    gallery: torch.Tensor,
    gallery_labels: Sequence[str],
    recall_ks: Sequence[int] = RECALL_KS,
    majority_ks: Sequence[int] = MAJORITY_KS,
) -> dict:
    if len(queries) != len(query_labels) or len(gallery) != len(gallery_labels):
        raise ValueError("embeddings and labels differ in length")
    if len(queries) == 0 or len(gallery) == 0:
        raise ValueError("need at least one query and one gallery item")
    nearest = neighbours(queries, gallery, max([*recall_ks, *majority_ks])).tolist()
    hits: dict[str, list[bool]] = defaultdict(list)
    for label, row in zip(query_labels, nearest):
        ranked = [gallery_labels[j] for j in row]
        for k in recall_ks:
            hits[f"recall@{k}"].append(label in ranked[:k])
        for k in majority_ks:
            hits[f"majority@{k}"].append(majority(ranked[:k]) == label)

    genres = sorted(set(query_labels))
    per_query_genre = Counter(query_labels)
    result: dict = {"queries": len(queries), "gallery": len(gallery)}
    for name, values in hits.items():
        per_genre = {
            g: sum(v for v, label in zip(values, query_labels) if label == g) / per_query_genre[g] for g in genres
        }
        result[name] = {
            "micro": _round(sum(values) / len(values)),
            "macro": _round(sum(per_genre.values()) / len(per_genre)),
            "per_genre": {g: _round(v) for g, v in per_genre.items()},
        }
    result["queries_per_genre"] = dict(sorted(per_query_genre.items()))
    return result


def summary(metrics: dict) -> dict[str, float]:
    """Flat figures, e.g. {"recall@1_macro": 0.12, ..., "vote_map@5": 0.2, "vote_auc@5": 0.6, "head_map": 0.22, ...}
    (for progress lines and history)."""
    flat = {
        f"{name}_{avg}": value[avg]
        for name, value in metrics.items()
        if isinstance(value, dict) and "macro" in value
        for avg in ("macro", "micro")
    }
    for k, vote in metrics.get("vote", {}).items():
        flat[f"vote_map@{k[1:]}"], flat[f"vote_auc@{k[1:]}"] = vote["map"], vote["auc"]
    if "head" in metrics:
        flat["head_map"], flat["head_auc"] = metrics["head"]["map"], metrics["head"]["auc"]
    return flat


def _round(x: float) -> float:
    return round(float(x), 6)
