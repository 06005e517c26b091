"""The genre vote's ranking figures: the same example, and the same numbers, as test/eval-ranking.test.ts."""

import pytest
import torch

from training.vote import multi_hot, vote_metrics, vote_scores


def test_vote_scores_weight_each_neighbour_for_each_of_its_genres():
    classes = ["Comedy", "Drama", "Horror"]
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    genres = multi_hot([["Comedy", "Drama"], ["Horror"]], classes)
    query = torch.tensor([[1.0, 0.0]])  # cos 1 with the first, 0 with the second
    scores = vote_scores(query, gallery, genres, k=2)
    w1, w2 = 1.0, 0.5  # (1 + cos) / 2
    total = 2 * w1 + w2
    assert scores[0].tolist() == pytest.approx([w1 / total, w1 / total, w2 / total])
    assert vote_scores(query, gallery, genres, k=1)[0].tolist() == pytest.approx([0.5, 0.5, 0.0])

def test_ap_and_auc_per_genre_and_their_means():
    classes = ["Comedy", "Drama", "Horror"]
    # The TypeScript test's vote shares, as scores directly.
    scores = torch.tensor(
        [[0.55 / 1.5, 0, 0.95 / 1.5], [0.95 / 1.5, 0, 0.55 / 1.5], [0.75 / 2.2, 0.75 / 2.2, 0.7 / 2.2]]
    )
    targets = multi_hot([["Horror"], ["Comedy"], ["Comedy", "Drama"]], classes)
    m = vote_metrics(scores, targets, classes)
    assert m["per_genre"]["Comedy"]["ap"] == pytest.approx(5 / 6)
    assert m["per_genre"]["Comedy"]["auc"] == pytest.approx(0.5)
    assert m["per_genre"]["Horror"] == {"ap": 1.0, "auc": 1.0, "positives": 1}
    assert m["map"] == pytest.approx((5 / 6 + 2) / 3, abs=1e-6)
    assert m["auc"] == pytest.approx(2.5 / 3, abs=1e-6)

def test_genres_without_both_positives_and_negatives_are_left_out():
    classes = ["A", "B"]
    targets = multi_hot([["A"], ["A", "B"]], classes)
    m = vote_metrics(torch.tensor([[0.9, 0.1], [0.5, 0.5]]), targets, classes)
    assert list(m["per_genre"]) == ["B"]
    empty = vote_metrics(torch.zeros(2, 2), multi_hot([["A"], ["A"]], classes), classes)
    assert empty == {"map": None, "auc": None, "per_genre": {}}
