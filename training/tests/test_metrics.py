import pytest
import torch

from training.metrics import majority, retrieval_metrics, summary

# Gallery on the unit circle (angles in the comments), and four queries; rankings worked out by hand:
#   q0 A (1, .1):   g0 A, g1 B, g2 A, g3 B, g4 C
#   q1 B (.7, .72): g2 A, g1 B, g3 B, g0 A, g4 C
#   q2 C (-1, .05): g4 C, g3 B, g2 A, g1 B, g0 A
#   q3 A (.1, 1):   g3 B, g2 A, g1 B, g0 A, g4 C
GALLERY = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])  # 0, 37, 53, 90, 180 deg
GALLERY_LABELS = ["A", "B", "A", "B", "C"]
QUERIES = torch.tensor([[1.0, 0.1], [0.7, 0.72], [-1.0, 0.05], [0.1, 1.0]])  # not unit length: normalised
QUERY_LABELS = ["A", "B", "C", "A"]


def test_hand_checked_toy_case():
    m = retrieval_metrics(QUERIES, QUERY_LABELS, GALLERY, GALLERY_LABELS)
    assert m["queries"] == 4 and m["gallery"] == 5
    assert m["queries_per_genre"] == {"A": 2, "B": 1, "C": 1}
    # Recall@1: q0 yes, q1 no (A first), q2 yes, q3 no (B first).
    assert m["recall@1"] == {"micro": 0.5, "macro": 0.5, "per_genre": {"A": 0.5, "B": 0.0, "C": 1.0}}
    assert m["recall@3"]["micro"] == 1.0 and m["recall@8"]["macro"] == 1.0  # k beyond the gallery: all of it
    assert m["majority@1"] == m["recall@1"]
    # majority@3: q0 A,B,A -> A; q1 A,B,B -> B; q2 C,B,A all tied -> C (most similar); q3 B,A,B -> B.
    assert m["majority@3"] == {"micro": 0.75, "macro": 0.833333, "per_genre": {"A": 0.5, "B": 1.0, "C": 1.0}}
    # majority@5: every query has a 2-2 tie, won by the label of its most similar neighbour:
    # q0 A (right), q1 A (wrong), q2 B (wrong), q3 B (wrong; alphabetical order would say A).
    assert m["majority@5"] == {"micro": 0.25, "macro": 0.166667, "per_genre": {"A": 0.5, "B": 0.0, "C": 0.0}}
    assert summary(m)["recall@1_macro"] == 0.5 and summary(m)["majority@5_micro"] == 0.25


def test_majority_ties_go_to_the_most_similar():
    assert majority(["B", "A", "A", "B", "C"]) == "B"
    assert majority(["C", "A", "A"]) == "A"
    assert majority(["Drama"]) == "Drama"


def test_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        retrieval_metrics(QUERIES, QUERY_LABELS[:2], GALLERY, GALLERY_LABELS)
    with pytest.raises(ValueError):
        retrieval_metrics(QUERIES[:0], [], GALLERY, GALLERY_LABELS)
