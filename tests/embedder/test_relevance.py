"""The relevance model (embedder/relevance.py) on synthetic data with a known answer."""

import numpy as np
import scipy.sparse as sp

from embedder.relevance import fit_relevance, watched

GROUPS, USERS_PER_GROUP, MOVIES_PER_GROUP = 4, 60, 30


def fit(seen, regularizations=(5.0,), held_out=None):
    held_out = sp.csr_matrix(seen.shape, dtype=np.float32) if held_out is None else held_out
    return fit_relevance(seen, held_out, rank=8, regularizations=regularizations, rating_weight=0.0)


def planted(seed=0, share=0.4):
    """Users of group g rate about ``share`` of group g's movies and a few others;
    the popular movies are group 0's, so popularity alone favours group 0."""
    rng = np.random.default_rng(seed)
    n_users, n_movies = GROUPS * USERS_PER_GROUP, GROUPS * MOVIES_PER_GROUP
    group_of_user = np.repeat(np.arange(GROUPS), USERS_PER_GROUP)
    group_of_movie = np.repeat(np.arange(GROUPS), MOVIES_PER_GROUP)
    odds = np.where(group_of_user[:, None] == group_of_movie[None, :], share, 0.02)
    odds[:, group_of_movie == 0] += 0.15
    rated = rng.random((n_users, n_movies)) < odds
    ratings = np.where(rated, rng.integers(1, 6, rated.shape), 0).astype(np.float32)
    return sp.csr_matrix(ratings), group_of_user, group_of_movie


def test_watch_scores_are_the_sum_of_the_rated_movies_rows_and_recover_the_groups():
    seen, group_of_user, group_of_movie = planted()
    model, _ = fit(seen)
    # p_u is exactly the fold-in of the movies the user rated.
    user = 7
    np.testing.assert_allclose(
        model.user_vector(seen[user].indices), model.user_factors[user], rtol=1e-4, atol=1e-5
    )
    scores = model.watch_scores(model.user_factors)
    scores[watched(seen).toarray() > 0] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :10]
    own_group = (group_of_movie[top] == group_of_user[:, None]).mean()
    popularity = np.asarray(watched(seen).sum(axis=0)).ravel()
    by_popularity = np.argsort(-np.where(watched(seen).toarray() > 0, -np.inf, popularity), axis=1)[:, :10]
    assert own_group > 0.8
    assert own_group > (group_of_movie[by_popularity] == group_of_user[:, None]).mean() + 0.3


def test_explain_names_the_movies_whose_removal_lowers_the_score_most():
    seen, _, _ = planted(seed=1)
    model, _ = fit(seen)
    rated = seen[3].indices
    target = int(np.setdiff1d(np.arange(seen.shape[1]), rated)[0])
    named, shares = model.explain(rated, target)
    assert 1 <= len(named) <= 3 and np.all(np.diff(shares) <= 0)
    full = model.watch_scores(model.user_vector(rated))[0, target]
    drops = {
        int(j): full - model.watch_scores(model.user_vector(np.setdiff1d(rated, [j])))[0, target]
        for j in rated
    }
    n = len(rated)
    for j, share in zip(named, shares):
        # Leaving j out takes its share away and rescales the rest from |N|^-½ to (|N| - 1)^-½.
        assert abs(drops[int(j)] - (full - (full - share) * np.sqrt(n / (n - 1)))) < 1e-4
        assert all(drops[int(j)] >= drop - 1e-6 for other, drop in drops.items() if other not in named)


def test_the_regularization_is_chosen_on_held_out_ratings_and_users_keep_all_their_ratings():
    seen, _, _ = planted(seed=2)
    rows, cols = seen.nonzero()
    held = np.random.default_rng(0).random(len(rows)) < 0.2
    held_out = sp.csr_matrix((np.full(held.sum(), 5.0), (rows[held], cols[held])), shape=seen.shape)
    model, figures = fit(seen, (0.1, 5.0, 1e6), held_out)
    assert set(figures) == {0.1, 5.0, 1e6} and all(0.0 <= value <= 1.0 for value in figures.values())
    assert (
        model.regularization == max(figures, key=figures.get) != 1e6
    )  # shrinking everything loses the groups
    np.testing.assert_allclose(
        model.user_vector(seen[4].indices), model.user_factors[4], rtol=1e-4, atol=1e-5
    )
