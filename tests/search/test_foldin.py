"""Fold-in: recommendations for a newcomer from a few ratings, without retraining."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from embedder.model import MFModel
from embedder.vocab import UnknownIdError
from search.cli import main
from search.foldin import UserPrior, fold_in
from search.recommender import Recommender
from tests.conftest import write_synthetic_bundle

MU = 3.0


def _movies_only(Q, b, mu=3.0):
    """A model of the movie side alone (fold-in reads no trained user)."""
    return MFModel(mu, np.zeros((0, Q.shape[1])), Q, np.zeros(0), b, (1.0, 5.0))


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A bundle on a wide rating scale whose movies span their space, with a known
    spread of trained users (their rows are what the prior is taken from)."""
    rng = np.random.default_rng(3)
    n_users, n_movies, d = 400, 300, 6
    movies = rng.normal(0, 1.0, (n_movies, d)).astype(np.float32)
    movie_biases = rng.normal(0, 0.5, n_movies).astype(np.float32)
    users = rng.normal(0, 0.8, (n_users, d)).astype(np.float32)
    user_biases = rng.normal(0, 0.4, n_users).astype(np.float32)
    seen = sp.random(
        n_users, n_movies, density=0.1, format="csr", random_state=1, data_rvs=lambda n: rng.uniform(0, 6, n)
    )
    # Training ratings = the model's prediction plus N(0, 0.3²): σ² is known.
    coo = seen.tocoo()
    seen.data = (
        MU
        + user_biases[coo.row]
        + movie_biases[coo.col]
        + np.einsum("ij,ij->i", users[coo.row], movies[coo.col])
        + rng.normal(0, 0.3, coo.nnz)
    ).astype(np.float32)
    path = tmp_path_factory.mktemp("foldin") / "bundle"
    write_synthetic_bundle(
        path,
        users,
        movies,
        user_biases,
        movie_biases,
        global_mean=MU,
        seen=seen,
        rating_counts=rng.integers(1, 100, n_movies),
        rating_scale=(-20.0, 20.0),
    )
    return Recommender.load(path), users, user_biases, movies, movie_biases


def test_the_prior_is_the_trained_users_spread_and_the_models_noise(wide):
    rec, users, user_biases, *_ = wide
    prior = rec._prior
    rows = np.c_[users, user_biases]
    np.testing.assert_allclose(prior.mean, rows.mean(0), atol=1e-5)
    np.testing.assert_allclose(prior.variance, rows.var(0), rtol=1e-4)
    assert prior.noise == pytest.approx(0.3**2, rel=0.1)


def test_many_clean_ratings_recover_the_hidden_user(wide):
    rec, _, _, movies, movie_biases = wide
    rng = np.random.default_rng(5)
    p, b = rng.normal(0, 0.8, movies.shape[1]), 0.7
    truth = MU + b + movie_biases + movies @ p
    rated = rng.choice(len(movies), 200, replace=False)
    noisy = truth[rated] + rng.normal(0, 0.05, len(rated))
    user = rec.fold_in({int(rec.movie_ids[r]): float(v) for r, v in zip(rated, noisy)})
    np.testing.assert_allclose(user.embedding, p, atol=0.05)
    assert user.bias == pytest.approx(b, abs=0.05)
    # And recommends like a trained user with that vector: unrated movies by predicted rating.
    ids, scores, _ = rec.recommend_for_ratings(
        {int(rec.movie_ids[r]): float(v) for r, v in zip(rated, noisy)}, k=5
    )
    unrated = np.setdiff1d(np.arange(len(movies)), rated)
    best = unrated[np.argsort(-truth[unrated], kind="stable")[:5]]
    assert set(ids.tolist()) == set(rec.movie_ids[best].tolist())


def test_scores_are_the_folded_users_predicted_ratings_and_rated_movies_are_left_out(wide):
    rec, _, _, movies, movie_biases = wide
    ratings = {int(rec.movie_ids[0]): 5.0, int(rec.movie_ids[7]): 1.0, int(rec.movie_ids[9]): 3.5}
    user = rec.fold_in(ratings)
    ids, scores, _ = rec.recommend_for_ratings(ratings, k=len(movies))
    assert not set(ratings) & set(ids.tolist()) and len(ids) == len(movies) - 3
    rows = rec.bundle.movie_vocab.numbers(ids)
    expected = MU + user.bias + movie_biases[rows] + movies[rows] @ user.embedding
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    assert np.all(np.diff(scores) <= 0)


def test_the_closed_form_is_the_posterior_mean():
    # The posterior mean minimises Σ (t - z·x)²/σ² + Σ (x - m)²/s²: its gradient is zero there.
    rng = np.random.default_rng(0)
    Q, b = rng.normal(size=(30, 4)), rng.normal(size=30)
    prior = UserPrior(mean=rng.normal(size=5), variance=rng.uniform(0.5, 2, 5), noise=0.7)
    rows, ratings = np.array([1, 4, 9, 22]), rng.uniform(1, 5, 4)
    p, bias = fold_in(prior, _movies_only(Q, b), rows, ratings)
    x = np.r_[p, bias]
    Z = np.c_[Q[rows], np.ones(4)]
    gradient = Z.T @ (Z @ x - (ratings - 3.0 - b[rows])) / prior.noise + (x - prior.mean) / prior.variance
    np.testing.assert_allclose(gradient, 0, atol=1e-10)


def test_with_implicit_rows_the_own_part_is_solved_and_the_implicit_part_added():
    # The row is own + |N|^-½ Σ_{j∈N} [E_j, c_j]; the own part is the posterior mean
    # for the ratings less what the implicit part already predicts.
    rng = np.random.default_rng(1)
    Q, b = rng.normal(size=(30, 4)), rng.normal(size=30)
    E, c = rng.normal(size=(30, 4)), rng.normal(size=30)
    prior = UserPrior(mean=rng.normal(size=5), variance=rng.uniform(0.5, 2, 5), noise=0.7, implicit=(E, c))
    rows, ratings = np.array([1, 4, 9, 22]), rng.uniform(1, 5, 4)
    p, bias = fold_in(prior, _movies_only(Q, b), rows, ratings)
    known = np.r_[E[rows].sum(0), c[rows].sum()] / 2.0  # |N| = 4
    own = np.r_[p, bias] - known
    Z = np.c_[Q[rows], np.ones(4)]
    gradient = (
        Z.T @ (Z @ (own + known) - (ratings - 3.0 - b[rows])) / prior.noise
        + (own - prior.mean) / prior.variance
    )
    np.testing.assert_allclose(gradient, 0, atol=1e-10)


def test_the_prior_with_implicit_rows_is_the_spread_of_the_trained_users_own_parts():
    rng = np.random.default_rng(2)
    n_users, n_movies, d = 50, 20, 3
    seen = sp.random(
        n_users, n_movies, density=0.3, format="csr", random_state=3, data_rvs=lambda n: rng.uniform(1, 5, n)
    )
    own = rng.normal(0.5, 0.2, (n_users, d + 1))
    E, c = rng.normal(size=(n_movies, d)), rng.normal(size=n_movies)
    N = (seen.toarray() > 0).astype(float)
    implicit = N @ np.c_[E, c] / np.sqrt(np.maximum(N.sum(1, keepdims=True), 1))
    rows = own + implicit
    Q, b = rng.normal(size=(n_movies, d)), rng.normal(size=n_movies)
    prior = UserPrior.from_model(
        MFModel(3.0, rows[:, :d], Q, rows[:, d], b, (1.0, 5.0)), seen, implicit=(E, c)
    )
    trained = N.sum(1) > 0
    np.testing.assert_allclose(prior.mean, own[trained].mean(0), atol=1e-10)
    np.testing.assert_allclose(prior.variance, own[trained].var(0), rtol=1e-8)


def test_no_ratings_is_the_average_user_among_widely_rated_movies(wide):
    rec, *_ = wide
    user = rec.fold_in({})
    assert user.fallback
    np.testing.assert_allclose(np.r_[user.embedding, user.bias], rec._prior.mean, atol=1e-5)
    ids, _, _ = rec.recommend_for_ratings([], k=10)
    counts = rec.bundle.movies.set_index("movie_id").loc[ids, "rating_count"].to_numpy()
    assert len(ids) == 10 and (counts >= rec.fallback_min_ratings).all() and rec.fallback_min_ratings > 0


@pytest.mark.parametrize(
    "ratings, error, message",
    [
        ({999_999: 4.0, 888_888: 3.0}, UnknownIdError, "unknown movies 999999, 888888"),
        ({1: 25.0}, ValueError, "rating of movie 1 must be a number from -20 to 20, got 25.0"),
        ({1: float("nan")}, ValueError, "rating of movie 1"),
        ({1: "5"}, ValueError, "rating of movie 1"),
        ([(1, 4.0), (1, 5.0)], ValueError, "movie 1 is rated more than once"),
        ([("1", 4.0)], ValueError, "movie ids integers"),
        ([(1, 4.0, 2)], ValueError, "expected (movie_id, rating) pairs"),
    ],
)
def test_bad_ratings_are_refused_naming_the_problem(wide, ratings, error, message):
    rec, *_ = wide
    with pytest.raises(error) as caught:
        rec.recommend_for_ratings(ratings)
    assert message in str(caught.value)


def test_cli_recommends_for_ratings_given_by_flag_or_file(planted_bundle, tmp_path, capsys):
    rec = Recommender.load(planted_bundle)
    first, second = (int(m) for m in rec.movie_ids[:2])
    title = rec.catalogue.movie(second)["title"]
    assert (
        main(
            [
                "recommend",
                "--bundle",
                planted_bundle,
                "--rate",
                f"{first}=5",
                "--rate",
                f"{title}=2",
                "-k",
                "3",
                "--json",
            ]
        )
        == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert shown["ratings"] == [{"movie_id": first, "rating": 5.0}, {"movie_id": second, "rating": 2.0}]
    expected, _, _ = rec.recommend_for_ratings({first: 5.0, second: 2.0}, k=3)
    assert [item["movie_id"] for item in shown["items"]] == expected.tolist() and not shown["fallback"]

    csv = tmp_path / "mine.csv"
    csv.write_text(f"movie,rating\n{first},5\n{title},2\n")
    assert main(["recommend", "--bundle", planted_bundle, "--ratings", str(csv), "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "folded in, rated movies excluded" in out and title in out

    csv.write_text(f"movie,rating\n{first},5\n{first + 10**6},2\n")
    assert main(["recommend", "--bundle", planted_bundle, "--ratings", str(csv)]) == 2
    assert f"mine.csv, line 3: unknown movie '{first + 10**6}'" in capsys.readouterr().err
    assert main(["recommend", "--bundle", planted_bundle, "--rate", "5"]) == 2
    assert 'expected "MOVIE=RATING"' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["recommend", "--bundle", planted_bundle, "--rate", f"{first}=5", "--include-seen"])
    assert "applies to --user only" in capsys.readouterr().err


def test_a_trained_user_folded_in_from_their_own_training_ratings_gets_about_their_list(
    tiny_bundle, synthetic_csv
):
    """Every user of a bundle trained by the real CLI, folded in again from their own
    training ratings (the movie side frozen): their top 10 overlaps the trained
    user's by at least 0.6 on average, and their test RMSE is within 0.05 of the
    trained user's."""
    from embedder.data import canonical_split, load_ratings
    from embedder.metrics import rating_errors

    rec = Recommender.load(tiny_bundle)
    bundle = rec.bundle
    _, test = canonical_split(load_ratings(synthetic_csv, progress=False).ratings)
    test = test[test["user_id"].isin(bundle.user_ids) & test["movie_id"].isin(bundle.movie_ids)]
    overlaps, folded, trained = [], [], []
    for row, user_id in enumerate(bundle.user_ids.tolist()):
        rated = bundle.seen[row]
        ratings = dict(zip(bundle.movie_ids[rated.indices].tolist(), rated.data.tolist()))
        ids, _, _ = rec.recommend_for_ratings(ratings, k=10)
        overlaps.append(len(set(ids.tolist()) & set(rec.recommend(user_id, k=10)[0].tolist())) / 10)
        user = rec.fold_in(ratings)
        mine = test[test["user_id"] == user_id]
        movies = bundle.movie_vocab.numbers(mine["movie_id"].to_numpy())
        model = bundle.model
        raw = (
            model.global_mean
            + user.bias
            + model.movie_biases[movies]
            + model.movie_embeddings[movies] @ user.embedding
        )
        folded.append(np.clip(raw, *bundle.rating_scale))
        trained.append(bundle.model.predict_ids(mine["user_id"].to_numpy(), mine["movie_id"].to_numpy()))
    assert len(bundle.user_ids) == 300 and np.mean(overlaps) >= 0.6
    truth = np.concatenate(
        [test.loc[test["user_id"] == u, "rating"].to_numpy() for u in bundle.user_ids.tolist()]
    )
    rmse = lambda predicted: rating_errors(np.concatenate(predicted), truth)["rmse"]
    assert abs(rmse(folded) - rmse(trained)) <= 0.05
