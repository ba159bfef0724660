"""The Gibbs sampler (the default method) on synthetic data with a known answer: its
maths, its stopping rule, its chain. What every method gives is tested in
``test_contract.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedder.config import TrainConfig
from embedder.gibbs import Convergence, GibbsSampler, LowRankSum, PosteriorMean
from embedder.train import train
from tests.conftest import make_low_rank_ratings
from tests.embedder.conftest import SCALE, low_rank_rows, vocabularies


def test_one_chain_on_all_training_rows_after_a_warm_up(gibbs_fit):
    result = gibbs_fit.result
    history = result.history
    assert history["epoch"].tolist() == list(range(1, len(history) + 1)) and result.best_epoch == len(history)
    assert history["val_rmse"].isna().all()  # nothing held out
    assert result.refit_history is None and result.fitted_all
    assert 1 <= result.warm_up_passes <= TrainConfig().warm_up


def test_the_chain_stops_once_its_mean_has_converged():
    frame, users, movies = _small_frame()
    config = TrainConfig(dim=4, sample_dim=3, sweeps=5000, min_sweeps=10, tolerance=0.002, seed=2)
    result = train(frame, config, users, movies, SCALE, progress=False)
    assert config.min_sweeps <= result.best_epoch < 5000
    stricter = train(
        frame,
        TrainConfig(dim=4, sample_dim=3, sweeps=5000, min_sweeps=10, tolerance=0.0005, seed=2),
        users,
        movies,
        SCALE,
        progress=False,
    )
    assert stricter.best_epoch > result.best_epoch  # a smaller tolerance takes more sweeps


def test_the_convergence_estimate_is_the_monte_carlo_error_of_the_mean():
    # Samples = truth + N(0, s²) noise: the mean's extra squared error is s²/S, so
    # doubling S gains s²/(2S) in MSE, about s²/(4 S σ) in RMSE at noise σ.
    rng = np.random.default_rng(0)
    truth, s, sigma = rng.normal(size=20_000), 0.3, 0.8
    convergence = Convergence(len(truth), torch.device("cpu"), tolerance=1e-3, min_samples=5)
    for _ in range(25):
        convergence.add(torch.as_tensor(truth + rng.normal(0, s, len(truth))))
    assert convergence.gain(sigma) == pytest.approx(s**2 / (4 * 25 * sigma), rel=0.03)
    assert convergence.converged(convergence.gain(sigma)) == (s**2 / (4 * 25 * sigma) < 1e-3)


def test_warm_up_passes_fit_the_training_ratings():
    sampler, _, _, r = _small_sampler(seed=3)
    start = float(r.std())
    errors = []
    for _ in range(3):
        sampler.warm_up(ridge=5.0)
        errors.append(float(sampler.residuals.square().mean().sqrt()))
    assert errors[0] < start and errors[2] <= errors[1] <= errors[0]


def test_without_refit_the_validation_run_is_returned():
    frame, _ = make_low_rank_ratings(n_users=40, n_movies=30, density=0.5, seed=5)
    users, movies = vocabularies(frame)
    config = TrainConfig(dim=4, sample_dim=2, sweeps=10, min_sweeps=10, burn_in=3, refit=False)
    result = train(frame, config, users, movies, SCALE, progress=False)
    assert result.refit_history is None and not result.fitted_all
    assert result.history["epoch"].tolist() == list(range(4, 11))  # burn-in sweeps are not averaged
    assert result.history["val_rmse"].notna().all()  # the validation curve
    assert result.trained_users.sum() <= frame["user_id"].nunique()


def _small_sampler(seed=0, dim=3):
    u, m, r = low_rank_rows(30, 20, density=0.6, seed=seed)
    return GibbsSampler(30, 20, dim, (u, m, r), init_std=0.3, seed=seed), u, m, r


def test_a_noise_free_draw_is_the_conditional_mean_worked_out_per_user(monkeypatch):
    sampler, u, m, r = _small_sampler()
    sampler.sweep()  # move away from the initial state
    k = sampler.dim + 1
    prior_mean, prior_precision = np.linspace(-0.2, 0.2, k), np.linspace(1.0, 3.0, k)
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float64)
    ridge_prior = sampler._prior
    fixed = lambda rows, draw, ridge: (as_tensor(prior_mean), as_tensor(prior_precision))
    monkeypatch.setattr(sampler, "_prior", lambda *args: fixed(*args) if args[1] else ridge_prior(*args))
    monkeypatch.setattr(sampler, "_normal", lambda *shape: torch.zeros(shape, dtype=torch.float64))
    X = sampler._draw_rows(sampler.users, sampler.X, sampler.Y, True, 0.0)[0].numpy()
    ridge = sampler._draw_rows(sampler.users, sampler.X, sampler.Y, False, 5.0)[0].numpy()  # a warm-up step
    Y, mu, alpha, d = sampler.Y.numpy(), sampler.mu, sampler.alpha, sampler.dim
    for user in (0, 7, 29):
        mine = u == user
        Z = np.c_[Y[m[mine], :d], np.ones(mine.sum())]  # features [q_i, 1]
        target = r[mine] - mu - Y[m[mine], d]
        precision = alpha * Z.T @ Z + np.diag(prior_precision)
        expected = np.linalg.solve(precision, alpha * Z.T @ target + prior_precision * prior_mean)
        np.testing.assert_allclose(X[user], expected, rtol=1e-5, atol=1e-6)
        least_squares = np.linalg.solve(Z.T @ Z + 5.0 * np.eye(k), Z.T @ target)
        np.testing.assert_allclose(ridge[user], least_squares, rtol=1e-5, atol=1e-6)


def test_posterior_mean_is_the_mean_of_the_samples():
    sampler, *_ = _small_sampler(seed=2)
    exact = PosteriorMean(keep=40, cap=50)  # 12 draws of width 3 never fill it
    squeezed = PosteriorMean(keep=6, cap=9)  # compressed to rank 6 again and again
    draws = []
    for _ in range(12):
        sampler.sweep()
        exact.add(sampler.sample)
        squeezed.add(sampler.sample)
        mu, bu, bi, P, Q = sampler.sample
        draws.append((mu, bu.numpy().copy(), bi.numpy().copy(), (P @ Q.T).numpy()))
    dense = np.mean([d[3] for d in draws], 0)
    mu, bu, bi, P, Q = exact.factors(rank=30)
    assert P.shape == (30, 30) and Q.shape == (20, 30)  # zero-padded beyond the sum's rank (20)
    assert mu == pytest.approx(np.mean([d[0] for d in draws]))
    np.testing.assert_allclose(bu.numpy(), np.mean([d[1] for d in draws], 0), atol=1e-12)
    np.testing.assert_allclose(bi.numpy(), np.mean([d[2] for d in draws], 0), atol=1e-12)
    np.testing.assert_allclose((P @ Q.T).numpy(), dense, atol=1e-10)
    # Compressing loses only what lies beyond the kept rank: the error is of the
    # order of the 7th singular value, far below the leading ones.
    *_, P6, Q6 = squeezed.factors(rank=6)
    s = np.linalg.svd(dense, compute_uv=False)
    assert np.abs((P6 @ Q6.T).numpy() - dense).max() < 3 * s[6] < 0.2 * s[0]


def test_low_rank_sum_is_exact_within_its_rank_and_optimal_beyond():
    rng = np.random.default_rng(0)
    total = LowRankSum(keep=8, cap=10)
    dense = np.zeros((15, 12))
    for _ in range(4):  # total rank 8 = keep, compressed twice on the way
        A, B = rng.normal(size=(15, 2)), rng.normal(size=(12, 2))
        total.add(torch.as_tensor(A), torch.as_tensor(B))
        dense += A @ B.T
    A, B = total.truncated(8)
    np.testing.assert_allclose((A @ B.T).numpy(), dense, atol=1e-10)
    # Rank 3: the best rank-3 approximation (Eckart-Young), i.e. the top 3 singular triplets.
    U, s, Vt = np.linalg.svd(dense)
    A3, B3 = total.truncated(3)
    np.testing.assert_allclose((A3 @ B3.T).numpy(), (U[:, :3] * s[:3]) @ Vt[:3], atol=1e-10)


def test_low_rank_sum_of_repeated_factors_stays_exact():
    # Ten identical columns pairs have rank 2: the bases must drop the null
    # directions instead of dividing by them.
    rng = np.random.default_rng(1)
    A, B = torch.as_tensor(rng.normal(size=(9, 2))), torch.as_tensor(rng.normal(size=(7, 2)))
    total = LowRankSum(keep=3, cap=5)
    for _ in range(5):
        total.add(A, B)
    P, Q = total.truncated(3)
    assert P.shape[1] <= 3 and torch.isfinite(P).all() and torch.isfinite(Q).all()
    np.testing.assert_allclose((P @ Q.T).numpy(), 5 * (A @ B.T).numpy(), atol=1e-10)


def _small_frame(seed=8):
    frame, _ = make_low_rank_ratings(n_users=60, n_movies=40, density=0.4, seed=seed)
    return frame, *vocabularies(frame)
