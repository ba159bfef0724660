"""Bias augmentation: the inner product is the predicted rating; cosine rows handle zeros."""

from __future__ import annotations

import numpy as np

from embedder.bundle import Bundle
from search.vectors import normalize_rows
from tests.search.conftest import brute_force_scores


def test_augmented_inner_product_is_the_predicted_rating(tiny_bundle):
    bundle = Bundle.load(tiny_bundle)
    users, items = bundle.model.user_vectors(), bundle.model.item_vectors()
    assert users.dtype == items.dtype == np.float32
    assert users.shape[1] == items.shape[1] == bundle.dim + 2
    truth = brute_force_scores(tiny_bundle)
    rng = np.random.default_rng(0)
    u = rng.integers(0, len(users), 2000)
    i = rng.integers(0, len(items), 2000)
    np.testing.assert_allclose(np.einsum("ij,ij->i", users[u], items[i]), truth[u, i], atol=1e-4)
    # and it agrees with the bundle's own prediction function
    raw = bundle.model.predict_ids(bundle.user_ids[u], bundle.movie_ids[i], clip=False)
    np.testing.assert_allclose(np.einsum("ij,ij->i", users[u], items[i]), raw, atol=1e-4)


def test_normalize_rows_keeps_zero_rows_zero():
    vectors = np.array([[3, 4], [0, 0], [0, -2]], np.float32)
    unit, zero = normalize_rows(vectors)
    assert zero.tolist() == [False, True, False]
    np.testing.assert_allclose(unit, [[0.6, 0.8], [0, 0], [0, -1]])
    assert np.isfinite(unit).all()
