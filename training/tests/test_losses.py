"""The multi-label proxy-anchor loss against pytorch-metric-learning's ProxyAnchorLoss and the formula."""

import math

import pytest
import torch
from pytorch_metric_learning.losses import ProxyAnchorLoss

from training.losses import MultiLabelProxyAnchorLoss

C, D = 6, 16


def pair(seed=0, margin=0.1, alpha=32.0):
    torch.manual_seed(seed)
    ours = MultiLabelProxyAnchorLoss(C, D, margin=margin, alpha=alpha)
    library = ProxyAnchorLoss(C, D, margin=margin, alpha=alpha)
    library.proxies.data.copy_(ours.proxies.data)
    return ours, library


@pytest.mark.parametrize("seed,margin,alpha", [(0, 0.1, 32.0), (1, 0.2, 16.0), (2, 0.0, 64.0)])
def test_on_single_labels_it_is_the_librarys_loss(seed, margin, alpha):
    ours, library = pair(seed, margin, alpha)
    g = torch.Generator().manual_seed(seed)
    embeddings = torch.nn.functional.normalize(torch.randn(32, D, generator=g), dim=1)
    labels = torch.randint(0, C - 1, (32,), generator=g)  # class C-1 has no positive in the batch
    want = library(embeddings, labels)
    assert ours(embeddings, labels).item() == pytest.approx(want.item(), rel=1e-5)
    one_hot = torch.nn.functional.one_hot(labels, C).float()
    assert ours(embeddings, one_hot).item() == pytest.approx(want.item(), rel=1e-5)


def test_gradients_match_the_librarys_on_single_labels():
    ours, library = pair(3)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, D, generator=g)
    labels = torch.randint(0, C, (16,), generator=g)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours(a, labels).backward()
    library(b, labels).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)
    assert torch.allclose(ours.proxies.grad, library.proxies.grad, atol=1e-6)


def test_a_poster_is_a_positive_of_every_one_of_its_genres():
    loss = MultiLabelProxyAnchorLoss(3, 2, margin=0.1, alpha=2.0)
    loss.proxies.data = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    x = torch.tensor([[1.0, 1.0]]) / math.sqrt(2)  # cos 0.707 with proxies 0 and 1, -0.707 with proxy 2
    targets = torch.tensor([[1.0, 1.0, 0.0]])
    c = 1 / math.sqrt(2)
    pos = 2 * math.log1p(math.exp(-2.0 * (c - 0.1)))  # proxies 0 and 1, one positive each
    neg = math.log1p(math.exp(2.0 * (-c + 0.1)))  # proxy 2: x is its negative
    assert loss(x, targets).item() == pytest.approx(pos / 2 + neg / 3, rel=1e-6)


def test_float32_under_bf16_autocast_and_shapes_checked():
    ours, _ = pair(4)
    x = torch.randn(8, D)
    labels = torch.randint(0, C, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = ours(x, labels)
    assert under.dtype == torch.float32
    assert under.item() == pytest.approx(ours(x, labels).item(), rel=1e-6)
    with pytest.raises(ValueError, match="targets must be"):
        ours(x, torch.zeros(8, C + 1))
