"""The one exact top-K against brute-force numpy: ids, scores, ties, exclusion, banned columns, padding."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import search.topk
from search.topk import select_topk, top_k


def reference(queries, items, k, exclude=None):
    """Brute force: full score matrix, -inf where excluded, stable sort (lower column first on ties)."""
    scores = queries.astype(np.float64) @ items.astype(np.float64).T
    if exclude is not None:
        scores[exclude.nonzero()] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, order, axis=1)
    return np.where(np.isfinite(best), order, -1), best


def grid_values(rng, shape, step=0.25):
    """Values on a coarse grid: float32 sums of their products are exact, so ties are real ties."""
    return (rng.integers(-8, 9, size=shape) * step).astype(np.float32)


@pytest.mark.parametrize("user_block, n_groups", [(1024, 1024), (256, 64), (7, 13), (1, 1), (64, 300)])
@pytest.mark.parametrize("k", [1, 10, 500])
def test_blocked_equals_brute_force_with_ties_and_exclusion(monkeypatch, user_block, n_groups, k):
    monkeypatch.setattr(search.topk, "N_GROUPS", n_groups)
    monkeypatch.setattr(search.topk, "USER_BLOCK", user_block)
    rng = np.random.default_rng(user_block + n_groups + k)
    queries, items = grid_values(rng, (150, 6)), grid_values(rng, (300, 6))
    exclude = sp.random(150, 300, density=0.3, format="csr", random_state=k)
    cols, scores = top_k(queries, items, k, exclude)
    want_cols, want_scores = reference(queries, items, k, exclude)
    assert np.array_equal(cols, want_cols)  # grid values: exact, ties included
    np.testing.assert_array_equal(scores, want_scores.astype(np.float32))


@pytest.mark.parametrize("n_groups", [1024, 100])
def test_random_float_scores_match_brute_force(monkeypatch, n_groups):
    """Rating-like scores (a shared per-item bias), several slabs per row and a tail."""
    monkeypatch.setattr(search.topk, "N_GROUPS", n_groups)
    monkeypatch.setattr(search.topk, "USER_BLOCK", 100)
    rng = np.random.default_rng(1)
    queries = rng.normal(0, 0.3, size=(333, 20)).astype(np.float32)
    items = rng.normal(0, 0.3, size=(5000, 20)).astype(np.float32)
    queries[:, -1], items[:, -1] = 1.0, rng.normal(0, 1, 5000)
    exclude = sp.random(333, 5000, density=0.05, format="csr", random_state=2)
    cols, scores = top_k(queries, items, 10, exclude)
    want_cols, want_scores = reference(queries, items, 10, exclude)
    np.testing.assert_allclose(scores, want_scores, atol=1e-4)
    assert (cols == want_cols).mean() > 0.999  # float rounding may swap a near-tie


def test_rows_with_too_few_candidates_are_padded():
    items = np.eye(4, dtype=np.float32)
    queries = np.ones((2, 4), np.float32)
    exclude = sp.csr_matrix(np.array([[1, 1, 1, 0], [0, 0, 0, 0]]))
    cols, scores = top_k(queries, items, 3, exclude)
    assert cols.tolist() == [[3, -1, -1], [0, 1, 2]]
    assert scores[0, 0] == 1 and np.isneginf(scores[0, 1:]).all()


def test_k_larger_than_catalogue_returns_the_catalogue():
    items = np.arange(12, dtype=np.float32).reshape(6, 2)
    cols, _ = top_k(np.ones((1, 2), np.float32), items, 100)
    assert cols.shape == (1, 6)
    assert cols[0].tolist() == [5, 4, 3, 2, 1, 0]


def test_all_ties_pick_the_first_rows():
    items = np.ones((50, 3), np.float32)
    cols, _ = top_k(np.ones((3, 3), np.float32), items, 5)
    assert (cols == np.arange(5)).all()


def test_banned_columns_are_left_out_of_every_row():
    rng = np.random.default_rng(4)
    queries, items = grid_values(rng, (30, 4)), grid_values(rng, (90, 4))
    banned = np.arange(0, 90, 3)
    cols, scores = top_k(queries, items, 8, banned=banned)
    exclude = sp.csr_matrix(
        (np.ones(30 * len(banned)), np.tile(banned, 30), np.arange(31) * len(banned)), shape=(30, 90)
    )
    want_cols, want_scores = reference(queries, items, 8, exclude)
    assert np.array_equal(cols, want_cols) and not np.isin(cols, banned).any()
    np.testing.assert_array_equal(scores, want_scores.astype(np.float32))


@settings(max_examples=150, deadline=None)
@given(
    n_queries=st.integers(1, 40),
    n_items=st.integers(1, 60),
    k=st.integers(1, 70),
    user_block=st.integers(1, 50),
    n_groups=st.integers(1, 70),
    density=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_blocked_search_is_exact(n_queries, n_items, k, user_block, n_groups, density, seed):
    """Exact ids and scores, ties included, whatever the blocks, groups and exclusions."""
    defaults = search.topk.N_GROUPS, search.topk.USER_BLOCK  # hypothesis forbids monkeypatch
    search.topk.N_GROUPS, search.topk.USER_BLOCK = n_groups, user_block
    try:
        check_property(n_queries, n_items, k, density, seed)
    finally:
        search.topk.N_GROUPS, search.topk.USER_BLOCK = defaults


def check_property(n_queries, n_items, k, density, seed):
    rng = np.random.default_rng(seed)
    queries, items = grid_values(rng, (n_queries, 3), 1.0), grid_values(rng, (n_items, 3), 1.0)
    queries[:, -1], items[:, -1] = 1.0, rng.integers(-6, 7, n_items)  # a shared "bias": rows get skipped
    exclude = sp.csr_matrix(rng.random((n_queries, n_items)) < density)
    cols, scores = top_k(queries, items, k, exclude)
    want_cols, want_scores = reference(queries, items, min(k, n_items), exclude)
    assert np.array_equal(cols, want_cols)
    np.testing.assert_array_equal(scores, want_scores.astype(np.float32))
    for q in range(n_queries):  # one query at a time agrees too
        one, _ = top_k(queries[q : q + 1], items, k, exclude[q])
        assert np.array_equal(one[0], cols[q])


@pytest.mark.parametrize("n_groups", [1024, 37])
def test_users_who_have_seen_almost_everything(monkeypatch, n_groups):
    """Rows with 0..k+2 unseen movies, ties on a coarse grid: exact, padded where short."""
    monkeypatch.setattr(search.topk, "N_GROUPS", n_groups)
    rng = np.random.default_rng(7)
    n_items, k = 2000, 10
    queries, items = grid_values(rng, (40, 4)), grid_values(rng, (n_items, 4))
    seen = np.ones((40, n_items), bool)
    for row in range(40):
        unseen = rng.choice(n_items, row % (k + 3), replace=False)
        seen[row, unseen] = False
    seen[-5:] = rng.random((5, n_items)) < 0.5  # and a few ordinary users
    exclude = sp.csr_matrix(seen)
    monkeypatch.setattr(search.topk, "USER_BLOCK", 16)
    cols, scores = top_k(queries, items, k, exclude)
    want_cols, want_scores = reference(queries, items, k, exclude)
    assert np.array_equal(cols, want_cols)
    np.testing.assert_array_equal(scores, want_scores.astype(np.float32))


@settings(max_examples=100, deadline=None)
@given(
    n_rows=st.integers(1, 20),
    n_cols=st.integers(1, 400),
    k=st.integers(1, 30),
    n_groups=st.integers(1, 200),
    levels=st.integers(1, 6),
    excluded=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_select_equals_argsort(n_rows, n_cols, k, n_groups, levels, excluded, seed):
    """select_topk equals a stable argsort of the masked scores, with many ties (few levels)."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, (n_rows, n_cols)).astype(np.float32)
    scores[rng.random(scores.shape) < excluded] = -np.inf
    search.topk.N_GROUPS, default = n_groups, search.topk.N_GROUPS
    try:
        cols, best = select_topk(scores, k)
    finally:
        search.topk.N_GROUPS = default
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    want = np.take_along_axis(scores, order, axis=1)
    assert np.array_equal(cols, np.where(np.isfinite(want), order, -1))
    np.testing.assert_array_equal(best, want)
