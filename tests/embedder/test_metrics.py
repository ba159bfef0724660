"""The metric functions against small cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedder import metrics


def test_rmse_and_mae():
    predicted, actual = [1.0, 2.0, 3.0], [1.0, 2.0, 5.0]
    assert metrics.rating_errors(predicted, actual) == {
        "rmse": pytest.approx(math.sqrt(4 / 3)),
        "mae": pytest.approx(2 / 3),
    }


def test_hits_at_k_marks_relevant_pairs_only():
    recommended = np.array([[1, 2], [0, 1]])
    # Row 0 likes item 2; row 1 likes items 3 and 0; item 1 is relevant to nobody.
    hits = metrics.hits_at_k(recommended, np.array([0, 1, 1]), np.array([2, 3, 0]))
    assert hits.tolist() == [[False, True], [True, False]]


def test_precision_recall_ndcg_by_hand():
    hits = np.array([[False, True, False], [True, True, False]])
    n_relevant = np.array([2, 4])
    assert metrics.precision_at_k(hits) == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert metrics.recall_at_k(hits, n_relevant) == pytest.approx((1 / 2 + 2 / 4) / 2)
    # Row 0: DCG = 1/log2(3); ideal (2 relevant) = 1 + 1/log2(3).
    # Row 1: DCG = 1 + 1/log2(3); ideal (4 relevant, k = 3) = 1 + 1/log2(3) + 1/2.
    d2 = 1 / math.log2(3)
    expected = (d2 / (1 + d2) + (1 + d2) / (1 + d2 + 0.5)) / 2
    assert metrics.ndcg_at_k(hits, n_relevant) == pytest.approx(expected)
    assert metrics.ndcg_at_k(np.array([[True, True, False]]), np.array([2])) == pytest.approx(1.0)


def test_rows_without_relevant_items_are_skipped_by_recall_and_ndcg():
    hits = np.array([[True, False], [False, False]])
    assert metrics.recall_at_k(hits, np.array([1, 0])) == pytest.approx(1.0)
    assert metrics.ndcg_at_k(hits, np.array([1, 0])) == pytest.approx(1.0)


def test_catalogue_coverage():
    assert metrics.catalogue_coverage(np.array([[1, 2], [0, 1]]), 10) == pytest.approx(0.3)
    assert metrics.catalogue_coverage(np.array([[1, -1], [0, -1]]), 10) == pytest.approx(0.2)  # padding


def test_padding_is_never_a_hit():
    # Row 1's padding (-1) must not read as row 0's last item.
    hits = metrics.hits_at_k(np.array([[3, 0], [2, -1]]), np.array([0]), np.array([3]))
    assert hits.tolist() == [[True, False], [False, False]]


def test_jaccard_and_its_mean_over_neighbours():
    a, b, c = frozenset("AB"), frozenset("BC"), frozenset()
    pairs = lambda x, y: metrics.mean_jaccard(np.array([0]), np.array([[1]]), [x, y])
    assert pairs(a, b) == pytest.approx(1 / 3) and pairs(a, a) == 1.0 and pairs(c, c) == 0.0
    sets = [a, b, c, frozenset("A")]
    # Query 0 with neighbours 1 and 3: (1/3 + 1/2) / 2; query 1 with 0 and 2: (1/3 + 0) / 2.
    value = metrics.mean_jaccard(np.array([0, 1]), np.array([[1, 3], [0, 2]]), sets)
    assert value == pytest.approx((1 / 3 + 1 / 2 + 1 / 3 + 0) / 4)
