"""The blocked exact top-K against brute-force numpy: ids, scores, ties, exclusion, padding."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import search.topk
from search.topk import BlockedTopK, select_topk, topk_1d, topk_rows
from search.validate import check_k
from tests.conftest import ROOT


@pytest.fixture(scope="module", autouse=True, params=["compiled", "numpy"])
def select_kind(request):
    """Every test here runs with the compiled select (numba, extra ``fast``) and with numpy's."""
    if request.param == "compiled" and search.topk._compiled_select() is None:
        pytest.skip("numba is not installed")
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "numpy":
            patch.setattr(search.topk, "_compiled_select", lambda: None)
        yield request.param


def test_the_compiled_select_is_installed_where_the_tests_run():
    # setup.sh installs the extra `fast`; without it the compiled half above would be skipped unseen.
    from search.compiled_select import select_rows

    assert callable(select_rows)


def test_without_numba_the_numpy_select_answers():
    code = """
import sys
sys.modules["numba"] = None  # as if numba were not installed
import numpy as np
from search.topk import _compiled_select, select_topk
cols, best = select_topk(np.array([[1, 3, 2, -np.inf]], np.float32), 4)
print(_compiled_select() is None, cols.tolist(), best.tolist())
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.split("\n")[0] == "True [[1, 2, 0, -1]] [[3.0, 2.0, 1.0, -inf]]", result.stderr


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
    rng = np.random.default_rng(user_block + n_groups + k)
    queries, items = grid_values(rng, (150, 6)), grid_values(rng, (300, 6))
    exclude = sp.random(150, 300, density=0.3, format="csr", random_state=k)
    engine = BlockedTopK(items, user_block=user_block)
    cols, scores = engine.search(queries, k, exclude)
    want_cols, want_scores = reference(queries, items, k, exclude)
    assert np.array_equal(cols, want_cols)  # grid values: exact, ties included
    np.testing.assert_array_equal(scores, want_scores.astype(np.float32))


@pytest.mark.parametrize("n_groups", [1024, 100])
def test_random_float_scores_match_brute_force(monkeypatch, n_groups):
    """Rating-like scores (a shared per-item bias), several slabs per row and a tail."""
    monkeypatch.setattr(search.topk, "N_GROUPS", n_groups)
    rng = np.random.default_rng(1)
    queries = rng.normal(0, 0.3, size=(333, 20)).astype(np.float32)
    items = rng.normal(0, 0.3, size=(5000, 20)).astype(np.float32)
    queries[:, -1], items[:, -1] = 1.0, rng.normal(0, 1, 5000)
    exclude = sp.random(333, 5000, density=0.05, format="csr", random_state=2)
    engine = BlockedTopK(items, user_block=100)
    cols, scores = engine.search(queries, 10, exclude)
    want_cols, want_scores = reference(queries, items, 10, exclude)
    np.testing.assert_allclose(scores, want_scores, atol=1e-4)
    assert (cols == want_cols).mean() > 0.999  # float rounding may swap a near-tie


def test_rows_with_too_few_candidates_are_padded():
    items = np.eye(4, dtype=np.float32)
    queries = np.ones((2, 4), np.float32)
    exclude = sp.csr_matrix(np.array([[1, 1, 1, 0], [0, 0, 0, 0]]))
    cols, scores = BlockedTopK(items).search(queries, 3, exclude)
    assert cols.tolist() == [[3, -1, -1], [0, 1, 2]]
    assert scores[0, 0] == 1 and np.isneginf(scores[0, 1:]).all()


def test_k_larger_than_catalogue_returns_the_catalogue():
    items = np.arange(12, dtype=np.float32).reshape(6, 2)
    cols, _ = BlockedTopK(items).search(np.ones((1, 2), np.float32), 100)
    assert cols.shape == (1, 6)
    assert cols[0].tolist() == [5, 4, 3, 2, 1, 0]


def test_all_ties_pick_the_first_rows():
    items = np.ones((50, 3), np.float32)
    cols, _ = BlockedTopK(items, user_block=2).search(np.ones((3, 3), np.float32), 5)
    assert (cols == np.arange(5)).all()
    assert topk_1d(np.ones(50, np.float32), 5)[0].tolist() == [0, 1, 2, 3, 4]


def test_iter_search_streams_every_row_in_order_and_can_stop_early():
    """Blocks in order, the same rows as one search; closing the stream early is fine."""
    rng = np.random.default_rng(3)
    queries, items = grid_values(rng, (1000, 4)), grid_values(rng, (200, 4))
    engine = BlockedTopK(items, user_block=64)
    whole, _ = engine.search(queries, 5)
    blocks = list(engine.iter_search(queries, 5, batch_size=300))
    assert [start for start, _, _ in blocks] == [0, 300, 600, 900]
    assert np.array_equal(np.vstack([c for _, c, _ in blocks]), whole)
    stream = engine.iter_search(queries, 5, batch_size=100)
    next(stream)
    stream.close()
    assert np.array_equal(engine.search(queries, 5)[0], whole)


@pytest.mark.parametrize("workers", [2, 3])
def test_several_workers_give_the_same_blocks_as_one(workers):
    """Blocks searched side by side come back in order, equal to one worker's, exclusions included."""
    rng = np.random.default_rng(workers)
    queries, items = grid_values(rng, (1000, 4)), grid_values(rng, (700, 4))
    exclude = sp.random(1000, 700, density=0.2, format="csr", random_state=workers)
    engine = BlockedTopK(items, user_block=37)  # several blocks a batch, the last one short
    one = list(engine.iter_search(queries, 7, exclude, batch_size=300))
    many = list(engine.iter_search(queries, 7, exclude, batch_size=300, workers=workers))
    assert [start for start, _, _ in many] == [start for start, _, _ in one] == [0, 300, 600, 900]
    for (_, cols, scores), (_, want_cols, want_scores) in zip(many, one):
        assert np.array_equal(cols, want_cols) and np.array_equal(scores, want_scores)
    want_cols, _ = reference(queries, items, 7, exclude)
    assert np.array_equal(np.vstack([c for _, c, _ in many]), want_cols)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", None, True])
def test_bad_k_is_a_value_error_naming_k(bad):
    with pytest.raises(ValueError, match="k must be"):
        check_k(bad)
    with pytest.raises(ValueError, match="k must be"):
        BlockedTopK(np.ones((3, 2), np.float32)).search(np.ones((1, 2), np.float32), bad)


def test_shapes_are_checked():
    engine = BlockedTopK(np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="queries must have shape"):
        engine.search(np.ones((1, 5), np.float32), 1)
    with pytest.raises(ValueError, match="exclude must have shape"):
        engine.search(np.ones((2, 2), np.float32), 1, sp.csr_matrix((2, 4)))
    with pytest.raises(ValueError, match="batch_size"):
        next(engine.iter_search(np.ones((2, 2), np.float32), 1, batch_size=0))


def test_topk_1d_drops_excluded_and_breaks_ties_by_index():
    scores = np.array([1, 3, -np.inf, 3, 2, -np.inf], np.float32)
    cols, best = topk_1d(scores, 10)
    assert cols.tolist() == [1, 3, 4, 0]
    assert best.tolist() == [3, 3, 2, 1]
    assert topk_1d(scores, 1)[0].tolist() == [1]


def test_topk_rows_pads_and_uses_given_columns():
    scores = np.array([[0.5, -np.inf, 2.0], [1.0, 1.0, 1.0]], np.float32)
    columns = np.array([[7, 8, 9], [30, 10, 20]])
    cols, best = topk_rows(scores, 4, columns)
    assert cols.tolist() == [[9, 7, -1, -1], [10, 20, 30, -1]]
    assert np.isneginf(best[0, 2:]).all()


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
    search.topk.N_GROUPS, default = n_groups, search.topk.N_GROUPS  # hypothesis forbids monkeypatch
    try:
        check_property(n_queries, n_items, k, user_block, density, seed)
    finally:
        search.topk.N_GROUPS = default


def check_property(n_queries, n_items, k, user_block, density, seed):
    rng = np.random.default_rng(seed)
    queries, items = grid_values(rng, (n_queries, 3), 1.0), grid_values(rng, (n_items, 3), 1.0)
    queries[:, -1], items[:, -1] = 1.0, rng.integers(-6, 7, n_items)  # a shared "bias": rows get skipped
    exclude = sp.csr_matrix(rng.random((n_queries, n_items)) < density)
    engine = BlockedTopK(items, user_block=user_block)
    cols, scores = engine.search(queries, k, exclude)
    want_cols, want_scores = reference(queries, items, min(k, n_items), exclude)
    assert np.array_equal(cols, want_cols)
    np.testing.assert_array_equal(scores, want_scores.astype(np.float32))
    for q in range(n_queries):  # the single-query path agrees too
        one, _ = topk_1d(np.where(exclude[q].toarray()[0], -np.inf, queries[q] @ items.T), k)
        assert one.tolist() == [c for c in cols[q] if c >= 0]


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
    cols, scores = BlockedTopK(items, user_block=16).search(queries, k, exclude)
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


@pytest.mark.parametrize("n", [1, 7, 1682, 4096, 4097, 20000])  # both sides of topk_1d's switch
def test_topk_1d_equals_the_grouped_select_with_ties_and_exclusions(n):
    rng = np.random.default_rng(n)
    for trial in range(20):
        scores = rng.integers(0, 3 if trial % 2 else 1000, n).astype(np.float32)
        scores[rng.random(n) < (0.99 if trial == 5 else 0.3)] = -np.inf
        for k in (1, 10, 100):
            cols, best = topk_1d(scores, k)
            ref_cols, ref_best = select_topk(scores[None], k)
            found = ref_cols[0] >= 0
            assert cols.dtype == np.int64 and best.dtype == np.float32
            assert cols.tolist() == ref_cols[0][found].tolist() and best.tolist() == ref_best[0][found].tolist()



def test_a_stream_closed_early_leaves_the_other_blocks_unsearched():
    """The workers run ahead by a few blocks only, and those still queued are dropped on close."""
    rng = np.random.default_rng(5)
    engine = BlockedTopK(grid_values(rng, (50, 4)), user_block=10)
    searched = []
    search_block = engine._block
    engine._block = lambda queries, s, e, *rest: searched.append(s) or search_block(queries, s, e, *rest)
    stream = engine.iter_search(grid_values(rng, (1000, 4)), 3, batch_size=20, workers=2)  # 100 blocks
    first, cols, _ = next(stream)
    stream.close()
    assert first == 0 and len(cols) == 20
    assert 2 <= len(searched) <= 2 + 2 * 2 + 2  # the first batch, the look-ahead, and one running per worker


@pytest.mark.parametrize("n", [1, 7, 64, 300, 1682, 5000, 70_000])
@pytest.mark.parametrize("k", [1, 10, 100, 400])
def test_topk_1d_equals_brute_force(n, k):
    """Short vectors (one partition) and long ones (strided group maxima) alike, with
    many ties and excluded entries; fewer candidates than k gives a shorter answer."""
    rng = np.random.default_rng(n * 1000 + k)
    scores = rng.integers(0, 50, n).astype(np.float32)  # few distinct values: ties everywhere
    scores[rng.random(n) < 0.3] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    want = order[np.isfinite(scores[order])]
    cols, best = topk_1d(scores, k)
    assert cols.tolist() == want.tolist()
    assert np.array_equal(best, scores[want])
