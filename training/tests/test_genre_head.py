"""The genre head on synthetic embeddings whose genres are linearly decodable: it learns them,
its probabilities are calibrated, its thresholds beat a fixed 0.5 on F1, and metrics match sklearn."""

import numpy as np
import torch

from training.genre_head import expected_calibration_error, fit_genre_head, head_metrics, probabilities


def synthetic(n: int, seed: int, classes: int = 4, dims: int = 16):
    """Unit vectors; genre c is present when a noisy projection on direction c is high (rates 10-40%)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, dims, generator=g), dim=1)
    noise = 0.15 * torch.randn(n, classes, generator=g)
    cut = torch.tensor([0.35, 0.25, 0.15, 0.05])
    y = ((x[:, :classes] + noise) > cut).float()
    return x, y


def test_learns_decodable_genres_and_is_calibrated():
    (tx, ty), (vx, vy), (qx, qy) = synthetic(3000, 0), synthetic(1000, 1), synthetic(2000, 2)
    head = fit_genre_head(tx, ty, vx, vy, ["a", "b", "c", "d"])
    probs = probabilities(head, qx)
    figures = head_metrics(probs, qy.numpy(), np.array(head["thresholds"]))
    assert figures["auc"] > 0.9 and figures["map"] > 0.7
    assert figures["ece"] < 0.03  # held-out posters: a probability means what it says
    fixed = head_metrics(probs, qy.numpy(), np.full(4, 0.5))
    assert figures["f1_macro"] >= fixed["f1_macro"] - 0.01
    # an uninformative head (constant probabilities) is no better than chance
    flat = head_metrics(np.full_like(probs, 0.3), qy.numpy())
    assert flat["auc"] == 0.5


def test_ece_of_perfect_and_wrong_probabilities():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    assert expected_calibration_error(y.astype(float), y) == 0.0
    assert expected_calibration_error(1.0 - y, y) == 1.0
