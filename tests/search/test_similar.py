"""search.similar: the blend against a float64 dense computation, exclusions, a planted neighbour."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import search.similar
from search import Recommender
from search.similar import EMBEDDING_WEIGHT, SIMILAR_FILES, Similarity, neighbour_table, unit_rows
from tests.conftest import write_synthetic_bundle
from tests.search.conftest import assert_exact_topk, assert_same_topk, dense_blend


def random_case(seed: int = 0, n_users: int = 60, n_movies: int = 40):
    """Random embeddings and ratings, with a zero embedding, a movie nobody rated,
    a movie with both, and users from one rating to almost all movies."""
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(n_movies, 5)).astype(np.float32)
    per_user = rng.integers(1, n_movies, n_users)
    rows = np.repeat(np.arange(n_users), per_user)
    cols = np.concatenate([rng.choice(n_movies, n, replace=False) for n in per_user])
    seen = sp.csr_matrix(
        (rng.integers(1, 6, len(rows)).astype(np.float32), (rows, cols)), shape=(n_users, n_movies)
    )
    seen = seen.tolil()
    seen[:, [3, 7]] = 0  # movies 3 and 7: no training ratings
    seen = seen.tocsr()
    seen.eliminate_zeros()
    embeddings[[5, 7]] = 0  # movies 5 and 7: zero embeddings
    return embeddings, seen


def assert_matches_dense(
    scores: np.ndarray, rows: np.ndarray, truth: np.ndarray, comparable: np.ndarray
) -> None:
    for got, row in zip(scores, rows):
        expected = np.where(comparable & comparable[row], truth[row], -np.inf)
        expected[row] = -np.inf
        assert got.dtype == np.float32
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
        np.testing.assert_allclose(got[np.isfinite(got)], expected[np.isfinite(expected)], atol=1e-5)


def test_one_movie_and_a_block_equal_the_dense_blend():
    embeddings, seen = random_case(1)
    similarity = Similarity(embeddings, seen)
    truth = dense_blend(embeddings, seen)
    comparable = np.isfinite(np.diag(truth))
    assert (
        np.flatnonzero(~comparable).tolist() == [3, 5, 7] == np.flatnonzero(~similarity.comparable).tolist()
    )
    rows = np.arange(len(embeddings))
    assert_matches_dense(np.vstack([similarity.block_scores([r]) for r in rows]), rows, truth, comparable)
    rows = np.array([0, 3, 5, 11, 2, 39, 11])  # any order, repeats, excluded queries
    assert_matches_dense(similarity.block_scores(rows), rows, truth, comparable)


def test_unit_rows_keep_zero_rows_zero():
    unit, zero = unit_rows(np.array([[3, 4], [0, 0], [0, -2]], np.float32))
    assert zero.tolist() == [False, True, False]
    np.testing.assert_allclose(unit, [[0.6, 0.8], [0, 0], [0, -1]])


@pytest.mark.parametrize(
    "width, block", [(6, 7), (39, 40), (45, 3)]
)  # a few, all others, wider than the catalogue
def test_the_neighbour_table_holds_each_movies_exact_top_k(width, block, monkeypatch):
    monkeypatch.setattr(search.similar, "TABLE_BLOCK", block)
    embeddings, seen = random_case(2)
    truth = dense_blend(embeddings, seen)
    comparable = np.isfinite(np.diag(truth))
    rows, scores = neighbour_table(Similarity(embeddings, seen), width=width)
    assert rows.shape == scores.shape == (len(embeddings), width) and rows.dtype == np.int32
    movie_ids = np.arange(len(embeddings)) * 10 + 1
    for row in range(len(embeddings)):
        reference = np.where(comparable & comparable[row], truth[row], -np.inf)
        reference[row] = -np.inf
        found = rows[row] >= 0
        # every comparable movie but itself, or width of them; then padding
        assert found.sum() == min(width, max(0, comparable.sum() - 1) if comparable[row] else 0)
        assert not found[found.sum() :].any() and np.isneginf(scores[row][~found]).all()
        ids = np.where(found, movie_ids[rows[row]], -1)
        assert_exact_topk(
            ids, scores[row], reference, movie_ids, width, excluded=np.flatnonzero(np.isneginf(reference))
        )


def test_excluded_movies_are_never_returned(tmp_path):
    embeddings, seen = random_case(2)
    path = tmp_path / "random"
    write_synthetic_bundle(path, np.ones((seen.shape[0], 5), np.float32), embeddings, seen=seen)
    rec = Recommender.load(path)
    excluded = set(rec.movie_ids[[3, 5, 7]].tolist())
    truth = dense_blend(embeddings, seen)
    for row in range(len(embeddings)):
        ids, scores = rec.similar(rec.movie_ids[row], k=100)
        if row in (3, 5, 7):  # no embedding or no ratings: nothing to compare
            assert ids.shape == scores.shape == (0,)
            continue
        assert len(ids) == len(embeddings) - 4 and not excluded & set(ids.tolist())
        rows = rec.bundle.movie_vocab.numbers(ids)
        np.testing.assert_allclose(scores, truth[row, rows], atol=1e-5)
        assert np.all(np.diff(scores) <= 0)


def test_a_built_bundle_answers_from_its_table_as_the_live_count_would(tmp_path, monkeypatch):
    """After ``search build`` every query (k up to the table's width, floors that
    leave enough and floors that do not) equals the live computation."""
    from search.build import build

    monkeypatch.setattr(
        search.similar.neighbour_table, "__defaults__", (8,)
    )  # narrower than the catalogue: floors fall back
    embeddings, seen = random_case(3)
    path = tmp_path / "random"
    counts = np.diff(seen.tocsc().indptr)
    write_synthetic_bundle(
        path, np.ones((seen.shape[0], 5), np.float32), embeddings, seen=seen, rating_counts=counts
    )
    build(path, n_clusters=2)
    rec = Recommender.load(path)
    live = Recommender.load(path)
    live._table = None  # as before build: every answer counted live
    table = rec.bundle.array(SIMILAR_FILES[0])
    assert table.shape == (len(embeddings), 8)
    asked = answered = 0
    for row in range(len(embeddings)):
        for k in (1, 5, 8):
            for floor in (0, int(np.median(counts)), int(counts.max())):
                asked += 1
                answered += ((table[row] >= 0) & (counts[table[row]] >= floor)).sum() >= k or table[row][
                    -1
                ] < 0
                want = live.similar(rec.movie_ids[row], k=k, min_ratings=floor)
                got = rec.similar(rec.movie_ids[row], k=k, min_ratings=floor)
                assert_same_topk(got[0][None], got[1][None], want[0][None], want[1][None])
    assert 0 < answered < asked  # the table answered most, the high floors fell back


def test_who_rated_what_decides_a_close_call(tmp_path):
    """Movie 102 points almost exactly like 101 but none of 101's raters rated it;
    103 points a little further away and has exactly 101's raters: 103 comes first,
    where the embeddings alone would put 102 first."""
    embeddings = np.array([[1, 0], [1, 0.05], [1, 0.3], [0, 1]], np.float32)
    seen = sp.csr_matrix(np.array([[5, 0, 4, 3], [4, 0, 5, 0], [0, 3, 0, 4], [0, 4, 0, 0]], np.float32))
    path = tmp_path / "planted"
    write_synthetic_bundle(path, np.ones((4, 2), np.float32), embeddings, seen=seen)
    rec = Recommender.load(path)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    assert unit[1] @ unit[0] > unit[2] @ unit[0]  # by the embeddings, 102 is closer
    ids, scores = rec.similar(101, k=3)
    assert ids.tolist() == [103, 104, 102]
    cos_c = np.array([1.0, 1 / np.sqrt(2 * 2)])  # 103: both raters shared; 104: one of 101's two, n = 2
    np.testing.assert_allclose(
        scores[:2], EMBEDDING_WEIGHT * (unit[[2, 3]] @ unit[0]) + (1 - EMBEDDING_WEIGHT) * cos_c, atol=1e-6
    )
    np.testing.assert_allclose(
        scores[2], EMBEDDING_WEIGHT * (unit[1] @ unit[0]), atol=1e-6
    )  # no shared rater


def test_the_index_is_built_on_first_use_or_by_warm(tmp_path):
    embeddings, seen = random_case(3)
    path = tmp_path / "lazy"
    write_synthetic_bundle(path, np.ones((seen.shape[0], 5), np.float32), embeddings, seen=seen)
    rec = Recommender.load(path)
    assert "_parts" not in vars(rec._similarity)  # loading builds nothing for similar
    rec.recommend(int(rec.user_ids[0]))
    assert "_parts" not in vars(rec._similarity)
    rec.warm()
    assert "_parts" in vars(rec._similarity)
