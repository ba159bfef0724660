"""The default top-K (by relevance) on a trained bundle with a planted answer: who watches what.

Users of group g watch group g's movies and rate them 3-4; a few "gems" get 5 stars
from a handful of users each, and group 0's movies are watched by everyone a little.
A good list for a user is mostly their own group's unseen movies: the relevance order
finds them, the rating order chases the gems, popularity gives everyone group 0.
"""

import numpy as np
import pandas as pd
import pytest

from search import Recommender

GROUPS, USERS, MOVIES, GEMS = 4, 50, 30, 12


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    rng = np.random.default_rng(3)
    rows = []
    for user in range(GROUPS * USERS):
        group = user // USERS
        for movie in range(GROUPS * MOVIES):
            own, popular = movie // MOVIES == group, movie // MOVIES == 0
            if rng.random() < (0.5 if own else 0.03) + (0.15 if popular else 0.0):
                rows.append((user + 1, movie + 1, float(rng.integers(3, 5))))
        for gem in rng.choice(GEMS, 1, replace=False) if rng.random() < 0.25 else []:
            rows.append((user + 1, GROUPS * MOVIES + gem + 1, 5.0))
    frame = pd.DataFrame(rows, columns=["user_id", "movie_id", "rating"])
    folder = tmp_path_factory.mktemp("planted")
    frame.assign(timestamp=np.arange(len(frame))).to_csv(folder / "ratings.csv", index=False)
    from embedder.cli import main

    args = [
        "train",
        "--data",
        str(folder / "ratings.csv"),
        "--out",
        str(folder / "b"),
        "--dim",
        "8",
        "--quiet",
    ]
    assert main(args) == 0
    return Recommender.load(folder / "b")


def own_group_share(rec, ids):
    users = np.repeat(rec.user_ids[:, None], ids.shape[1], axis=1)
    movies = ids - 1
    real = (ids > 0) & (movies < GROUPS * MOVIES)
    return float(((movies // MOVIES == (users - 1) // USERS) & real).mean())


def test_relevance_finds_each_users_group_better_than_rating_and_popularity(planted):
    rec = planted
    by_relevance, _, _ = rec.recommend(rec.user_ids, k=10)
    by_rating, _, _ = rec.recommend(rec.user_ids, k=10, order="rating")
    counts = rec.catalogue.rating_counts
    popular = np.argsort(-counts, kind="stable")
    seen = rec.bundle.seen
    by_popularity = np.array(
        [rec.movie_ids[[m for m in popular if seen[u, m] == 0][:10]] for u in range(len(rec.user_ids))]
    )
    relevance, rating, popularity = (
        own_group_share(rec, ids) for ids in (by_relevance, by_rating, by_popularity)
    )
    assert relevance > 0.8
    assert relevance > rating + 0.2 and relevance > popularity + 0.3


@pytest.mark.parametrize("order", ["relevance", "rating"])
def test_every_answered_item_carries_its_predicted_rating_in_both_orders(planted, order):
    rec = planted
    users = rec.user_ids[:40]
    ids, scores, relevance = rec.recommend(users, k=15, order=order)
    rows = np.repeat(rec.bundle.user_vocab.numbers(users)[:, None], ids.shape[1], axis=1)
    predicted = rec.bundle.model.predict(
        rows.ravel(), rec.bundle.movie_vocab.numbers(ids.ravel()), clip=False
    )
    np.testing.assert_allclose(scores.ravel(), predicted, atol=1e-4)
    ranked = relevance if order == "relevance" else scores
    assert np.all(np.diff(ranked, axis=1) <= 1e-6)  # best first in the order asked
    newcomer = {int(rec.movie_ids[0]): 5.0, int(rec.movie_ids[1]): 4.0}
    ids, scores, _ = rec.recommend_for_ratings(newcomer, k=10, order=order)
    user = rec.fold_in(newcomer)
    expected = rec.bundle.model.item_vectors()[rec.bundle.movie_vocab.numbers(ids)] @ user.query
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_because_names_rated_movies_and_a_bad_order_is_refused(planted):
    rec = planted
    user = int(rec.user_ids[5])
    ids, _, _ = rec.recommend(user, k=5)
    rated = rec.rated_rows(user)
    for named in rec.because(rated, ids):
        assert 1 <= len(named) <= 3 and set(rec.bundle.movie_vocab.numbers(named)) <= set(rated.tolist())
    with pytest.raises(ValueError, match="order must be one of relevance, rating, got 'best'"):
        rec.recommend(user, order="best")


def test_a_bundle_without_a_relevance_model_says_so_once_and_ranks_by_rating(tmp_path, caplog):
    from tests.conftest import random_bundle

    with caplog.at_level("WARNING", logger="search.recommender"):
        rec = Recommender.load(random_bundle(tmp_path / "old", n_users=8, n_movies=12))
        user = int(rec.user_ids[0])
        default, by_rating = rec.recommend(user, k=5), rec.recommend(user, k=5, order="rating")
        rec.recommend(user, k=5)
    warnings = [r.getMessage() for r in caplog.records if "no relevance model" in r.getMessage()]
    assert len(warnings) == 1 and "recommends by predicted rating until retrained" in warnings[0]
    assert rec.relevance is None and rec.order_of("relevance") == "rating"
    assert np.array_equal(default[0], by_rating[0]) and np.isnan(default[2]).all()
