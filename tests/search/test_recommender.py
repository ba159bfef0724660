"""The Recommender API: exact scores and top-K, exclusion, batches, similar, errors
(titles, movie rows and clusters: test_catalogue.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp

from embedder.vocab import UnknownIdError
from search import Recommender
from tests.conftest import write_synthetic_bundle
from tests.search.conftest import (
    N_GROUPS,
    PER_GROUP,
    assert_exact_topk,
    assert_same_topk,
    brute_force_scores,
    dense_blend,
    write_planted_bundle,
)


@pytest.fixture(scope="module")
def rec(tiny_bundle):
    return Recommender.load(tiny_bundle)


@pytest.fixture(scope="module")
def truth(tiny_bundle):
    return brute_force_scores(tiny_bundle)


def seen_rows(rec, user_row):
    seen = rec.bundle.seen
    return seen.indices[seen.indptr[user_row] : seen.indptr[user_row + 1]].tolist()


# ---------------------------------------------------------------- scores and top-K


def test_scores_are_predicted_ratings_for_random_pairs(rec, truth):
    """Every returned (user, movie) score equals μ + b_u + b_i + p_u·q_i from the .npy files."""
    rng = np.random.default_rng(0)
    users = rng.choice(rec.user_ids, 40, replace=False)
    ids, scores, _ = rec.recommend(users, k=len(rec.movie_ids), exclude_seen=False)
    rows = rec.bundle.user_vocab.numbers(users)
    cols = rec.bundle.movie_vocab.numbers(ids.ravel()).reshape(ids.shape)
    pick = rng.integers(0, ids.shape[1], size=(40, 25))
    np.testing.assert_allclose(
        np.take_along_axis(scores, pick, 1),
        truth[rows[:, None], np.take_along_axis(cols, pick, 1)],
        atol=1e-4,
    )


@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("k", [1, 10, 57])
def test_topk_equals_brute_force(rec, truth, exclude_seen, k):
    users = rec.user_ids[::7]
    ids, scores, _ = rec.recommend(users, k=k, exclude_seen=exclude_seen, order="rating")
    for n, user in enumerate(users):
        row = rec.bundle.user_vocab.number(user)
        excluded = seen_rows(rec, row) if exclude_seen else []
        assert_exact_topk(ids[n], scores[n], truth[row], rec.movie_ids, k, excluded)
        one_ids, one_scores, _ = rec.recommend(int(user), k=k, exclude_seen=exclude_seen, order="rating")
        assert_exact_topk(one_ids, one_scores, truth[row], rec.movie_ids, k, excluded)


def test_exclude_seen_never_returns_a_training_rating_and_stays_k_long(rec):
    ids, _, _ = rec.recommend(rec.user_ids, k=10)
    assert ids.shape == (len(rec.user_ids), 10)
    assert (ids >= 0).all()
    for n, user in enumerate(rec.user_ids):
        seen_ids = set(rec.movie_ids[seen_rows(rec, n)].tolist())
        assert not seen_ids & set(ids[n].tolist())


def test_batch_and_single_user_agree(rec):
    users = rec.user_ids[:50]
    ids, scores, _ = rec.recommend(users, k=10)
    for n, user in enumerate(users):
        one_ids, one_scores, _ = rec.recommend(user, k=10)
        assert one_ids.ndim == 1
        assert_same_topk(one_ids[None], one_scores[None], ids[n : n + 1], scores[n : n + 1])


def test_recommend_all_streams_every_user_and_equals_the_batch(rec):
    blocks = list(rec.recommend_all(k=7, batch_size=64))
    assert all(len(u) <= 64 for u, _, _, _ in blocks)
    users = np.concatenate([u for u, _, _, _ in blocks])
    assert np.array_equal(users, rec.user_ids)
    ids = np.vstack([i for _, i, _, _ in blocks])
    scores = np.vstack([s for _, _, s, _ in blocks])
    want_ids, want_scores, _ = rec.recommend(rec.user_ids, k=7)
    assert_same_topk(ids, scores, want_ids, want_scores)


def test_min_ratings_restricts_candidates_exactly(rec, truth):
    counts = rec.bundle.movies["rating_count"].to_numpy()
    threshold = int(np.median(counts))
    too_few = np.flatnonzero(counts < threshold).tolist()
    users = rec.user_ids[:30]
    ids, scores, _ = rec.recommend(users, k=10, min_ratings=threshold, order="rating")
    streamed = list(rec.recommend_all(k=10, min_ratings=threshold, order="rating"))
    assert_same_topk(streamed[0][1][:30], streamed[0][2][:30], ids, scores)
    for n, user in enumerate(users):
        row = rec.bundle.user_vocab.number(user)
        excluded = set(too_few) | set(seen_rows(rec, row))
        assert_exact_topk(ids[n], scores[n], truth[row], rec.movie_ids, 10, excluded)
        one_ids, one_scores, _ = rec.recommend(int(user), k=10, min_ratings=threshold, order="rating")
        assert_same_topk(one_ids[None], one_scores[None], ids[n : n + 1], scores[n : n + 1])


def test_min_ratings_above_every_count_gives_empty_results(rec):
    too_many = int(rec.bundle.movies["rating_count"].max()) + 1
    assert rec.recommend(rec.user_ids[0], min_ratings=too_many)[0].shape == (0,)
    assert rec.recommend(rec.user_ids[:3], min_ratings=too_many)[0].shape == (3, 0)
    assert all(ids.shape[1] == 0 for _, ids, _, _ in rec.recommend_all(min_ratings=too_many))
    assert rec.similar(rec.movie_ids[0], min_ratings=too_many)[0].shape == (0,)


def test_k_larger_than_catalogue_returns_what_exists(rec):
    n = len(rec.movie_ids)
    ids, _, _ = rec.recommend(rec.user_ids[0], k=n + 100, exclude_seen=False)
    assert len(ids) == n and len(set(ids.tolist())) == n
    user = rec.user_ids[0]
    unseen = n - len(seen_rows(rec, 0))
    assert len(rec.recommend(user, k=n + 100)[0]) == unseen
    batch_ids, batch_scores, _ = rec.recommend([user], k=n + 100)
    assert batch_ids.shape == (1, n)  # batch rows are padded to a common width
    assert (batch_ids[0, unseen:] == -1).all() and np.isneginf(batch_scores[0, unseen:]).all()


def test_ties_are_broken_by_catalogue_order(tmp_path):
    """Identical movies: every path returns the first rows, in bundle order."""
    path = tmp_path / "ties"
    # Users 1-3 rated nothing; user 4 rated every movie, so who rated what ties too ("movies like this").
    seen = np.vstack([np.zeros((3, 20)), np.ones((1, 20))]).astype(np.float32)
    write_synthetic_bundle(path, np.ones((4, 2), np.float32), np.ones((20, 2), np.float32), seen=seen)
    rec = Recommender.load(path)
    first = rec.movie_ids[:5].tolist()
    assert rec.recommend(1, k=5)[0].tolist() == first
    assert rec.recommend([1, 2, 3], k=5)[0].tolist() == [first] * 3
    assert np.vstack([i for _, i, _, _ in rec.recommend_all(k=5, rows=slice(0, 3))]).tolist() == [first] * 3
    assert rec.similar(rec.movie_ids[0], k=3)[0].tolist() == rec.movie_ids[1:4].tolist()


def test_concurrent_reads_from_threads_agree(rec):
    """The web server calls one Recommender from many threads."""
    want = rec.recommend(rec.user_ids, k=5)[0]
    singles_want = [rec.recommend(u, k=5)[0].tolist() for u in rec.user_ids[:20]]

    def work(_):
        return rec.recommend(rec.user_ids, k=5)[0], [
            rec.recommend(u, k=5)[0].tolist() for u in rec.user_ids[:20]
        ]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(work, range(6)))  # a worker's exception is re-raised here
    for batch, singles in results:
        assert np.array_equal(batch, want)  # same call, same blocks: identical
        assert singles == singles_want


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("call", ["single", "batch"])
def test_unknown_user_is_a_key_error_naming_it(rec, call):
    arg = 99999 if call == "single" else [rec.user_ids[0], 99999]
    with pytest.raises(KeyError, match="unknown user 99999") as info:
        rec.recommend(arg)
    assert isinstance(info.value, UnknownIdError)


def test_unknown_movie_is_a_key_error_naming_it(rec):
    with pytest.raises(UnknownIdError, match="unknown movie 424242"):
        rec.similar(424242)


@pytest.mark.parametrize("k", [0, -3, 1.5, "10", None])
def test_bad_k_is_a_value_error_naming_k(rec, k):
    with pytest.raises(ValueError, match="k must be"):
        rec.recommend(rec.user_ids[0], k=k)
    with pytest.raises(ValueError, match="k must be"):
        rec.similar(rec.movie_ids[0], k=k)
    with pytest.raises(ValueError, match="k must be"):
        rec.recommend_all(k=k)


def test_bad_arguments_are_value_errors(rec):
    with pytest.raises(ValueError, match="min_ratings"):
        rec.recommend(rec.user_ids[0], min_ratings=-1)
    with pytest.raises(ValueError, match="batch_size"):
        rec.recommend_all(batch_size=0)
    with pytest.raises(ValueError, match="whole numbers, got 'abc'"):
        rec.recommend("abc")
    with pytest.raises(ValueError, match="whole numbers, got 1.5"):
        rec.recommend(1.5)


# ---------------------------------------------------------------- similar


def test_similar_returns_same_group_movies_on_planted_data(tmp_path, planted):
    """A group's movies point alike and, here, are rated by the same users (each user
    rates mostly the movies of one group): the neighbours are the movie's group.
    (With the planted fixture's random raters, who rated what, which weighs 0.75,
    would be noise.)"""
    rng = np.random.default_rng(1)
    groups = planted["groups"]
    n_users = len(planted["user_embeddings"])
    chance = np.where((np.arange(n_users) % N_GROUPS)[:, None] == groups, 0.5, 0.05)
    seen = sp.csr_matrix(
        (rng.random(chance.shape) < chance) * rng.integers(1, 6, chance.shape).astype(np.float32)
    )
    write_planted_bundle(tmp_path / "bundle", {**planted, "seen": seen})
    rec = Recommender.load(tmp_path / "bundle")
    blend = dense_blend(planted["movie_embeddings"], seen)  # search.similar's score, float64
    for row in range(0, len(groups), 7):
        ids, scores = rec.similar(rec.movie_ids[row], k=10)
        rows = rec.bundle.movie_vocab.numbers(ids)
        assert row not in rows.tolist()
        assert (groups[rows] == groups[row]).all()
        assert np.all(np.diff(scores) <= 0) and scores.max() <= 1 + 1e-5
        np.testing.assert_allclose(scores, blend[row, rows], atol=1e-5)


def test_similar_min_ratings_and_k(planted_bundle, planted):
    rec = Recommender.load(planted_bundle)
    counts = planted["rating_counts"]
    ids, _ = rec.similar(rec.movie_ids[0], k=PER_GROUP * N_GROUPS, min_ratings=150)
    rows = rec.bundle.movie_vocab.numbers(ids)
    assert (counts[rows] >= 150).all()
    assert len(ids) == (counts >= 150).sum() - (counts[0] >= 150)


def test_zero_norm_movies_do_not_break_similar(tmp_path):
    movies = np.array([[1, 0], [0, 0], [0.9, 0.1], [0, 1], [0, 0]], np.float32)
    seen = np.array([[5, 0, 4, 3, 0], [4, 0, 4, 0, 0]], np.float32)  # as trained: zero rows were never rated
    path = tmp_path / "zeros"
    write_synthetic_bundle(path, np.ones((2, 2), np.float32), movies, seen=seen)
    rec = Recommender.load(path)
    ids, scores = rec.similar(101, k=10)
    assert ids.tolist() == [103, 104]  # zero-embedding movies 102 and 105 are never "similar"
    assert np.isfinite(scores).all()
    empty_ids, empty_scores = rec.similar(102, k=10)  # no direction: an empty answer, not arbitrary movies
    assert empty_ids.size == 0 and empty_scores.size == 0
