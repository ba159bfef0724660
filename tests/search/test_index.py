"""Approximate indexes: recall@10 against exact search, and exact scores after re-scoring."""

from __future__ import annotations

import numpy as np
import pytest

from search import Recommender
from search.index import IndexConfig, build_index, recall_at, search_candidates
from tests.conftest import write_synthetic_bundle
from tests.search.conftest import brute_force_scores, built_copy


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """A planted catalogue big enough for ANN to matter: 3000 movies in 30 taste groups."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(30, 16))
    movies = centres[rng.integers(0, 30, 3000)] + rng.normal(0, 0.3, (3000, 16))
    users = centres[rng.integers(0, 30, 300)] + rng.normal(0, 0.5, (300, 16))
    import scipy.sparse as sp

    seen = sp.random(
        300, 3000, density=0.02, format="csr", random_state=1, data_rvs=lambda n: np.full(n, 4.0)
    )
    path = tmp_path_factory.mktemp("ann") / "bundle"
    write_synthetic_bundle(
        path,
        users * 0.3,
        movies * 0.3,
        rng.normal(0, 0.2, 300),
        rng.normal(0, 0.2, 3000),
        seen=seen,
        rating_counts=rng.integers(0, 500, 3000),
    )
    return str(path)


@pytest.fixture(scope="module")
def flat(catalogue):
    return Recommender.load(catalogue)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_recall_and_exact_scores(kind, catalogue, flat, tmp_path):
    path = built_copy(catalogue, tmp_path / kind, n_clusters=5, index=kind)
    ann = Recommender.load(path)
    assert ann.index_kind == kind
    assert ann.bundle.manifest["index"]["recall_at_10"] >= 0.9
    truth = brute_force_scores(catalogue)
    users = flat.user_ids
    for exclude_seen, min_ratings in [(True, 0), (False, 0), (True, 250)]:
        exact, _, _ = flat.recommend(users, k=10, exclude_seen=exclude_seen, min_ratings=min_ratings)
        ids, scores, _ = ann.recommend(users, k=10, exclude_seen=exclude_seen, min_ratings=min_ratings)
        assert recall_at(ids, exact) >= 0.9
        rows = ann.bundle.movie_vocab.numbers(ids.ravel()).reshape(ids.shape)
        np.testing.assert_allclose(scores, truth[np.arange(len(users))[:, None], rows], atol=1e-4)
        assert np.all(np.diff(scores, axis=1) <= 1e-6)
        counts = ann.bundle.movies["rating_count"].to_numpy()
        assert (counts[rows] >= min_ratings).all()
        if exclude_seen:
            seen = ann.bundle.seen
            assert not any(seen[u, rows[u]].nnz for u in range(len(users)))
    assert ann.recommend(users[:2], k=10, min_ratings=10**6)[0].shape == (2, 0)
    one_ids, _, _ = ann.recommend(users[0], k=10)
    assert one_ids.ndim == 1 and len(one_ids) == 10
    streamed = np.vstack([i for _, i, _, _ in ann.recommend_all(k=10, batch_size=128)])
    assert np.array_equal(streamed, ann.recommend(users, k=10)[0])


def test_search_candidates_respects_the_allowed_mask():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 8)).astype(np.float32)
    index = build_index(vectors, IndexConfig(kind="hnsw"))
    allowed = np.zeros(500, bool)
    allowed[::3] = True
    found = search_candidates(index, vectors[:20], 10, allowed)
    assert allowed[found[found >= 0]].all()


def test_unknown_index_kind_is_refused():
    with pytest.raises(ValueError, match="index kind must be one of"):
        IndexConfig(kind="annoy")
