"""The implicit part of the model (who rated what): its composite rows, its
conditional draw against dense linear algebra, and a case only it can learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from embedder import implicit as implicit_module
from embedder.config import TrainConfig
from embedder.gibbs import GibbsSampler, PosteriorMean
from embedder.implicit import conjugate_gradients
from embedder.train import train
from tests.conftest import rewrite_file_and_manifest
from tests.embedder.conftest import low_rank_rows, vocabularies

N_USERS, N_MOVIES = 30, 20


def _small(implicit: str = "both", seed: int = 0, dim: int = 2):
    u, m, r = low_rank_rows(N_USERS, N_MOVIES, density=0.5, seed=seed)
    return (
        GibbsSampler(N_USERS, N_MOVIES, dim, (u, m, r), init_std=0.3, seed=seed, implicit=implicit),
        u,
        m,
        r,
    )


def _pattern(u: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``S N``: the rating pattern with each row scaled by ``|N(u)|^-½``."""
    N = np.zeros((N_USERS, N_MOVIES))
    N[u, m] = 1.0
    return N / np.sqrt(N.sum(1, keepdims=True))


def test_composite_rows_are_own_rows_plus_the_normalised_sum_of_the_implicit_rows():
    sampler, u, m, r = _small()
    for _ in range(3):
        sampler.sweep()
    SN = _pattern(u, m)
    Nt = np.zeros((N_MOVIES, N_USERS))
    Nt[m, u] = 1.0
    Nt /= np.sqrt(Nt.sum(1, keepdims=True))
    Xc = sampler.X.numpy() + SN @ sampler.implicit["users"].rows.numpy()
    Yc = sampler.Y.numpy() + Nt @ sampler.implicit["movies"].rows.numpy()
    np.testing.assert_allclose(sampler.Xc.numpy(), Xc, atol=1e-5)
    np.testing.assert_allclose(sampler.Yc.numpy(), Yc, atol=1e-5)
    d = sampler.dim
    expected = sampler.mu + Xc[u, d] + Yc[m, d] + (Xc[u, :d] * Yc[m, :d]).sum(1)
    np.testing.assert_allclose(
        sampler.predict(torch.as_tensor(u), torch.as_tensor(m)).numpy(), expected, atol=1e-5
    )
    # The residuals the sampler keeps (in the user side's CSR order: by user, stably)
    # are against the composite prediction too.
    np.testing.assert_allclose(
        sampler.residuals.numpy(), (r - expected)[np.argsort(u, kind="stable")], atol=1e-4
    )


def _dense_implicit_system(sampler: GibbsSampler, u, m, r, ridge: float):
    """The implicit user rows' normal equations, written out densely from the ratings."""
    d, k = sampler.dim, sampler.dim + 1
    X, Yc = sampler.X.numpy(), sampler.Yc.numpy()
    SN = _pattern(u, m)
    Z = np.c_[Yc[m, :d], np.ones(len(m))]  # per rating, the features [q_i, 1]
    target = r - sampler.mu - Yc[m, d] - (X[u] * Z).sum(1)  # ratings less all but the implicit part
    # prediction's implicit part at rating (u, i) = Σ_j SN[u, j] (V_j · z_i): J is (ratings) x (movies·k)
    J = (SN[u][:, :, None] * Z[:, None, :]).reshape(len(r), N_MOVIES * k)
    H = sampler.alpha * (J.T @ J + ridge * np.eye(N_MOVIES * k))
    return H, sampler.alpha * J.T @ target


@pytest.fixture
def exact_solves(monkeypatch):
    """Conjugate gradients run to (near) machine precision, to compare with dense solves."""
    monkeypatch.setattr(implicit_module, "CG_TOLERANCE", 1e-10)
    monkeypatch.setattr(implicit_module, "CG_MAX_ITERATIONS", 2000)


def test_the_implicit_rows_warm_up_step_solves_the_dense_ridge_problem(exact_solves):
    sampler, u, m, r = _small()
    sampler.warm_up(ridge=2.0)
    sampler.warm_up(ridge=2.0)
    # Redo the user side's step by hand: the own rows are as drawn, so the implicit
    # rows must be the exact ridge solution given them and the movies.
    implicit = sampler.implicit["users"]
    _, stats = sampler._draw_rows(sampler.users, sampler.X, sampler.Yc, False, 2.0, sampler.Xc - sampler.X)
    sampler._draw_implicit(implicit, sampler.X, stats, False, 2.0)
    H, rhs = _dense_implicit_system(sampler, u, m, r, ridge=2.0)
    expected = np.linalg.solve(H, rhs).reshape(N_MOVIES, -1)
    np.testing.assert_allclose(implicit.rows.numpy(), expected, atol=1e-6)


def test_implicit_draws_have_the_conditional_mean_and_covariance(exact_solves):
    sampler, u, m, r = _small(implicit="users", dim=1)
    sampler.sweep()
    implicit = sampler.implicit["users"]
    prior_mean = torch.linspace(-0.1, 0.1, 2, dtype=torch.float64)
    prior_precision = torch.tensor([3.0, 5.0], dtype=torch.float64)
    sampler._prior = lambda rows, draw, ridge: (prior_mean, prior_precision)
    draws = []
    for _ in range(1200):
        _, stats = sampler._draw_rows(sampler.users, sampler.X, sampler.Yc, True, 0.0, sampler.Xc - sampler.X)
        sampler._draw_implicit(implicit, sampler.X, stats, True, 0.0)
        draws.append(implicit.rows.numpy().ravel().copy())
    draws = np.array(draws)
    # The dense conditional: precision α JᵀJ + Λ, mean its inverse times α Jᵀe + Λm.
    H, rhs = _dense_implicit_system(sampler, u, m, r, ridge=0.0)
    lam = np.tile(prior_precision.numpy(), N_MOVIES)
    H += np.diag(lam)
    covariance = np.linalg.inv(H)
    mean = covariance @ (rhs + lam * np.tile(prior_mean.numpy(), N_MOVIES))
    sd = np.sqrt(np.diag(covariance))
    # 1,200 draws: the mean within ~5 standard errors, the spread within 10% (about 4.9
    # standard errors of a standard deviation estimated from that many).
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * sd / np.sqrt(len(draws)) + 1e-3)
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.1)


def test_conjugate_gradients_solve_a_symmetric_positive_definite_system():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(40, 40))
    H = torch.as_tensor(A @ A.T + 0.5 * np.eye(40))
    b = torch.as_tensor(rng.normal(size=(40, 1)))
    x, iterations = conjugate_gradients(
        lambda v: H @ v, b, torch.zeros_like(b), lambda res: res / H.diagonal().unsqueeze(1)
    )
    assert 0 < iterations <= 200
    assert float(torch.linalg.vector_norm(H @ x - b)) <= 1e-3 * float(torch.linalg.vector_norm(b)) * 1.0001


def test_the_posterior_mean_of_composite_rows_is_what_the_export_predicts():
    sampler, u, m, _ = _small(dim=2)
    mean = PosteriorMean(keep=64, cap=80)  # 8 samples of width 2: never truncated
    expected = np.zeros(len(u))
    users, movies = torch.as_tensor(u), torch.as_tensor(m)
    for count in range(1, 9):
        sampler.sweep()
        mean.add(sampler.sample)
        expected += (sampler.predict(users, movies).numpy() - expected) / count
    mu, bu, bi, P, Q = (x.numpy() if isinstance(x, torch.Tensor) else x for x in mean.factors(64))
    exported = mu + bu[u] + bi[m] + (P[u] * Q[m]).sum(1)
    np.testing.assert_allclose(exported, expected, atol=1e-6)


def _who_rated_what(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ratings where only the implicit signal tells the held-out answer.

    Two kinds of users: kind a rates movies of group A, kind b of group B, always
    about 3 stars (their values say nothing about their kind). Group C1 is loved by
    kind a (5) and hated by kind b (1); group C2 the other way round. "Teachers"
    rate as many C1 as C2 movies in training (so every bias stays level);
    "students" rate them only in the test part, so an explicit-only model sees
    nothing that separates the two kinds of students.
    """
    rng = np.random.default_rng(seed)
    n_users, per_group = 160, 15
    group = lambda g: np.arange(g * per_group, (g + 1) * per_group)
    liked = {"a": (group(2), group(3)), "b": (group(3), group(2))}
    train_rows, test_rows = [], []
    for user in range(n_users):
        kind = "ab"[user % 2]
        rows = train_rows if user < 100 else test_rows
        for movie in rng.choice(group(user % 2), 8, replace=False):
            train_rows.append(
                (user + 1, movie + 1, float(np.clip(np.round((3 + rng.normal(0, 0.3)) * 2) / 2, 1, 5)))
            )
        loved, hated = liked[kind]
        rows += [(user + 1, movie + 1, 5.0) for movie in rng.choice(loved, 3, replace=False)]
        rows += [(user + 1, movie + 1, 1.0) for movie in rng.choice(hated, 3, replace=False)]
    columns = ["user_id", "movie_id", "rating"]
    return pd.DataFrame(train_rows, columns=columns), pd.DataFrame(test_rows, columns=columns)


@pytest.mark.parametrize("implicit, bound", [("users", 0.5), ("both", 0.5), ("none", None)])
def test_a_case_only_who_rated_what_can_answer_is_learned(implicit, bound):
    train_part, test_part = _who_rated_what()
    both = pd.concat([train_part, test_part])
    users, movies = vocabularies(both)
    config = TrainConfig(dim=8, sample_dim=4, implicit=implicit, seed=0, min_sweeps=20)
    result = train(train_part, config, users, movies, (1.0, 5.0), progress=False)
    model = result.model
    rows_u = users.numbers(test_part["user_id"].to_numpy())
    rows_m = movies.numbers(test_part["movie_id"].to_numpy())
    rmse = float(np.sqrt(np.mean((model.predict(rows_u, rows_m) - test_part["rating"].to_numpy()) ** 2)))
    if bound is None:
        assert rmse > 1.5, rmse  # without the implicit part the students are a coin toss
    else:
        assert rmse < bound, rmse


@pytest.fixture(scope="module")
def implicit_bundles(tmp_path_factory):
    """The who-rated-what ratings as a CSV release, trained through the command line
    with and without the users' implicit part."""
    from embedder.cli import main

    root = tmp_path_factory.mktemp("implicit")
    train_part, test_part = _who_rated_what()
    ratings = pd.concat([train_part, test_part]).rename(columns={"user_id": "userId", "movie_id": "movieId"})
    ratings["timestamp"] = 1_000_000_000
    folder = root / "ml-latest-small"
    folder.mkdir()
    ratings.to_csv(folder / "ratings.csv", index=False)
    movie_ids = sorted(ratings["movieId"].unique())
    pd.DataFrame(
        {"movieId": movie_ids, "title": [f"Movie {i} (2000)" for i in movie_ids], "genres": "Drama"}
    ).to_csv(folder / "movies.csv", index=False)
    bundles = {}
    for implicit in ("users", "none"):
        bundles[implicit] = root / implicit
        flags = ["--dim", "8", "--sample-dim", "4", "--implicit", implicit, "--min-sweeps", "20", "--quiet"]
        assert main(["train", "--data", str(folder), "--out", str(bundles[implicit]), *flags]) == 0
    return bundles


def test_a_newcomer_gains_the_implicit_part_of_the_movies_they_rated(implicit_bundles):
    from search.recommender import Recommender

    with_implicit, without = (Recommender.load(implicit_bundles[name]) for name in ("users", "none"))
    assert with_implicit.bundle.implicit_rows() is not None and without.bundle.implicit_rows() is None
    # Three stars for five movies of group A: the values say nothing, the choice says "kind a".
    newcomer = {movie + 1: 3.0 for movie in range(5)}
    loved, hated = np.arange(31, 46), np.arange(46, 61)  # groups C1 and C2, as ids
    for recommender, expect_a_lean in ((with_implicit, True), (without, False)):
        user = recommender.fold_in(newcomer)
        model = recommender.bundle.model
        predicted = lambda ids: float(
            np.mean(
                [
                    model.global_mean
                    + user.bias
                    + model.movie_biases[r]
                    + model.movie_embeddings[r] @ user.embedding
                    for r in recommender.bundle.movie_vocab.numbers(ids)
                ]
            )
        )
        lean = predicted(loved) - predicted(hated)
        if expect_a_lean:
            assert lean > 2.0, lean  # kind a: C1 (5 stars) well above C2 (1 star)
            ids, _, _ = recommender.recommend_for_ratings(newcomer, k=5, order="rating")
            assert set(ids.tolist()) <= set(loved.tolist())
        else:
            assert abs(lean) < 1.0, lean


def test_the_default_bundle_holds_checked_implicit_rows(tiny_bundle, tmp_path):
    import shutil

    from embedder.bundle import IMPLICIT_BIASES, Bundle, BundleError, npy_writer

    bundle = Bundle.load(tiny_bundle)
    vectors, biases = bundle.implicit_rows()
    assert (
        vectors.shape == bundle.model.movie_embeddings.shape
        and biases.shape == bundle.model.movie_biases.shape
    )
    assert vectors.dtype == biases.dtype == np.float32 and np.abs(vectors).sum() > 0
    damaged = Path(shutil.copytree(tiny_bundle, tmp_path / "damaged"))
    rewrite_file_and_manifest(damaged, IMPLICIT_BIASES, npy_writer(np.zeros(4, np.float32)))
    with pytest.raises(BundleError, match=f"{IMPLICIT_BIASES}: has 4 rows, expected {len(biases)}"):
        Bundle.load(damaged).implicit_rows()


def test_the_settings_name_the_same_sides_as_the_sampler():
    from typing import get_args

    from embedder.gibbs import IMPLICIT_SIDES

    assert set(IMPLICIT_SIDES) == set(get_args(TrainConfig.model_fields["implicit"].annotation)) - {"auto"}


def test_auto_means_both_sides_up_to_the_limit_and_none_above():
    from embedder.config import IMPLICIT_AUTO_LIMIT

    config = TrainConfig()
    assert config.implicit == "auto"
    assert (
        config.implicit_sides(IMPLICIT_AUTO_LIMIT) == "both"
        and config.implicit_sides(IMPLICIT_AUTO_LIMIT + 1) == "none"
    )
    assert TrainConfig(implicit="users").implicit_sides(10**9) == "users"
