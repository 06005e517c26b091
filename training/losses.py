"""Proxy-anchor loss (Kim et al., CVPR 2020) for multi-label data.

pytorch-metric-learning's ProxyAnchorLoss takes one class index per embedding. A poster has
several genres, so here an embedding is a positive of the proxy of *every* class it carries; the
loss is otherwise the authors': per proxy, a soft-plus over its positives and one over its
negatives,

    L = 1/|P+| * sum_{p in P+} log(1 + sum_{x in X+_p} exp(-alpha * (s(x, p) - margin)))
      + 1/|P|  * sum_{p in P}  log(1 + sum_{x in X-_p} exp( alpha * (s(x, p) + margin)))

with s the cosine similarity, P+ the proxies with a positive in the batch. On one-hot targets it
is the library's loss (tests/test_losses.py checks that), including its proxy initialisation.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class MultiLabelProxyAnchorLoss(nn.Module):
    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.1, alpha: float = 32.0):
        super().__init__()
        self.proxies = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.kaiming_normal_(self.proxies, mode="fan_out")  # the library's default initialisation
        self.num_classes = num_classes
        self.margin = margin
        self.alpha = alpha

    def forward(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``embeddings`` [N, D]; ``targets`` [N, C] multi-hot (0/1), or [N] class indices (one-hot)."""
        if targets.dim() == 1:
            targets = F.one_hot(targets, self.num_classes)
        if targets.shape != (len(embeddings), self.num_classes):
            raise ValueError(f"targets must be [N] or [N, {self.num_classes}], got {list(targets.shape)}")
        pos = targets.bool()
        with torch.autocast(embeddings.device.type, enabled=False):  # alpha * cos needs float32, under any autocast
            cos = F.normalize(embeddings.float(), dim=1) @ F.normalize(self.proxies.float(), dim=1).T  # [N, C]
            pos_term = _log1p_sum_exp(-self.alpha * (cos - self.margin), pos)
            neg_term = _log1p_sum_exp(self.alpha * (cos + self.margin), ~pos)
        with_pos = pos.any(dim=0).sum().clamp(min=1)
        return pos_term.sum() / with_pos + neg_term.sum() / self.num_classes


def _log1p_sum_exp(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per column: log(1 + sum over kept rows of exp(x)), stably; 0 for a column with nothing kept."""
    masked = x.masked_fill(~keep, float("-inf"))
    zeros = torch.zeros(1, x.shape[1], dtype=x.dtype, device=x.device)
    return torch.logsumexp(torch.cat([masked, zeros]), dim=0)


def global_batch_loss(
    loss_fn: nn.Module, embeddings: torch.Tensor, targets: torch.Tensor, gather: Callable[[torch.Tensor], torch.Tensor] | None
) -> torch.Tensor:
    """The loss of the whole global batch, on every rank of a data-parallel run.

    Proxy-anchor's loss is not a mean over samples (each proxy's soft-plus runs over the batch), so a
    rank's loss on its own shard is not a share of the global one. ``gather`` (an all-gather whose
    backward sums the gradients of every rank's copy, e.g. LightningModule.all_gather with
    sync_grads) brings every rank's embeddings and targets: each rank computes the same global loss;
    its local embeddings get the gradient summed over ranks (world x the global loss's), and DDP's
    mean of the parameters' gradients over ranks, proxies included, is then the global loss's own.
    """
    if gather is None:
        return loss_fn(embeddings, targets)
    return loss_fn(gather(embeddings).flatten(0, 1), gather(targets).flatten(0, 1))


class RelationalDistillationLoss(nn.Module):
    """Relational knowledge distillation from a teacher's features (Park et al., CVPR 2019, angle-free form):
    the student's cosine similarities between the posters of a batch are pulled towards the teacher's,

        L = mean over pairs i != j of (s_i . s_j - t_i . t_j)^2

    with s the unit embeddings and t the teacher's features, centred on the train posters' mean and
    unit length (so that their similarities spread over [-1, 1] as the embedding's do). The student
    keeps its own space: only how posters relate to each other is taught, not the teacher's dimensions.
    """

    def forward(self, embeddings: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        with torch.autocast(embeddings.device.type, enabled=False):
            s = F.normalize(embeddings.float(), dim=1)
            t = F.normalize(teacher.float(), dim=1)
            off = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
            return ((s @ s.T - t @ t.T)[off] ** 2).mean()
