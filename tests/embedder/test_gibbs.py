"""The Gibbs sampler (the default method) on synthetic data with a known answer."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from embedder.config import TrainConfig
from embedder.export import model_arrays
from embedder.gibbs import GibbsSampler, LowRankSum, PosteriorMean, Ratings
from embedder.metrics import rating_errors
import embedder.train as train_module
from embedder.train import train
from embedder.vocab import Vocabulary
from tests.conftest import make_low_rank_ratings
from tests.embedder.test_train import NOISE, _predict, fit_synthetic

SCALE = (-10.0, 20.0)


@pytest.fixture(scope="module")
def fitted():
    result, train_part, test_part, _ = fit_synthetic(TrainConfig(method="gibbs", dim=8, sample_dim=4, sweeps=60, seed=1), SCALE)
    return result, train_part, test_part


def test_posterior_mean_reaches_the_noise_floor_on_held_out_ratings(fitted):
    result, _, test_part = fitted
    test_rmse = rating_errors(_predict(result, test_part), test_part["rating"].to_numpy())["rmse"]
    # The global mean is at ~0.78 here (see test_train.py); the noise floor is 0.1.
    assert test_rmse < 1.5 * NOISE, test_rmse
    assert result.model.user_factors.weight.shape == (300, 8)  # exported at rank dim, not sample_dim


def test_history_best_sweep_and_refit(fitted):
    result, train_part, _ = fitted
    history = result.history
    assert list(history.columns) == ["epoch", "train_rmse", "val_rmse", "seconds"]
    assert history["epoch"].tolist() == list(range(1, 61))
    best = history.loc[history["val_rmse"].idxmin()]
    assert result.best_epoch == best["epoch"] and result.validation_rmse == pytest.approx(best["val_rmse"])
    # The refit ran the chosen number of sweeps on all training rows, with nothing held out.
    refit = result.refit_history
    assert len(refit) == result.best_epoch and refit["val_rmse"].isna().all()
    assert result.trained_users.sum() == train_part["user_id"].nunique()
    assert result.trained_movies.sum() == train_part["movie_id"].nunique()


def test_without_refit_the_validation_run_is_returned():
    frame, _ = make_low_rank_ratings(n_users=40, n_movies=30, density=0.5, seed=5)
    users, movies = Vocabulary.from_values(frame["user_id"]), Vocabulary.from_values(frame["movie_id"])
    config = TrainConfig(dim=4, sample_dim=2, sweeps=10, burn_in=3, refit=False)
    result = train(frame, config, users, movies, SCALE, progress=False)
    assert result.refit_history is None
    assert result.history["epoch"].tolist() == list(range(4, 11))  # burn-in sweeps are not averaged
    assert result.trained_users.sum() <= frame["user_id"].nunique()


def test_same_seed_same_chain():
    frame, _ = make_low_rank_ratings(n_users=50, n_movies=40, seed=4)
    users, movies = Vocabulary.from_values(frame["user_id"]), Vocabulary.from_values(frame["movie_id"])
    config = TrainConfig(dim=4, sample_dim=3, sweeps=8, seed=7)
    a = train(frame, config, users, movies, SCALE, progress=False)
    b = train(frame, config, users, movies, SCALE, progress=False)
    for name, tensor in a.model.state_dict().items():
        assert np.array_equal(tensor.numpy(), b.model.state_dict()[name].numpy()), name


def _small_sampler(seed=0, dim=3):
    frame, _ = make_low_rank_ratings(n_users=30, n_movies=20, density=0.6, seed=seed)
    u, m = frame["user_id"].to_numpy() - 1, frame["movie_id"].to_numpy() - 1
    ratings = Ratings.from_arrays(u, m, frame["rating"].to_numpy(np.float64), torch.device("cpu"))
    return GibbsSampler(30, 20, dim, ratings, 0.3, seed), u, m, frame["rating"].to_numpy(np.float64)


def test_a_noise_free_draw_is_the_conditional_mean_worked_out_per_user(monkeypatch):
    sampler, u, m, r = _small_sampler()
    sampler.sweep()  # move away from the initial state
    k = sampler.dim + 1
    prior_mean, prior_precision = np.linspace(-0.2, 0.2, k), np.linspace(1.0, 3.0, k)
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float64)
    monkeypatch.setattr(sampler, "_hyper", lambda rows: (as_tensor(prior_mean), as_tensor(prior_precision)))
    monkeypatch.setattr(sampler, "_normal", lambda *shape: torch.zeros(shape, dtype=torch.float64))
    X = sampler._draw_side(sampler.users, sampler.X, sampler.Y).numpy()
    Y, mu, alpha, d = sampler.Y.numpy(), sampler.mu, sampler.alpha, sampler.dim
    for user in (0, 7, 29):
        mine = u == user
        Z = np.c_[Y[m[mine], :d], np.ones(mine.sum())]  # features [q_i, 1]
        target = r[mine] - mu - Y[m[mine], d]
        precision = alpha * Z.T @ Z + np.diag(prior_precision)
        expected = np.linalg.solve(precision, alpha * Z.T @ target + prior_precision * prior_mean)
        np.testing.assert_allclose(X[user], expected, rtol=1e-5, atol=1e-6)


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
    with pytest.raises(ValueError, match="cap"):
        LowRankSum(keep=4, cap=4)


def test_movies_without_training_ratings_are_exported_as_zero_rows():
    frame, _ = make_low_rank_ratings(n_users=30, n_movies=20, density=0.6, seed=3)
    users = Vocabulary.from_values(frame["user_id"])
    movies = Vocabulary.from_values(np.r_[frame["movie_id"].unique(), [999]])  # 999 has no ratings
    config = TrainConfig(dim=4, sample_dim=2, sweeps=5)
    result = train(frame, config, users, movies, SCALE, progress=False)
    arrays = model_arrays(result)
    row = movies.number(999)
    assert not result.trained_movies[row]
    assert np.all(arrays["movie_embeddings.npy"][row] == 0) and arrays["movie_biases.npy"][row] == 0
    assert arrays["movie_embeddings.npy"].dtype == np.float32


def test_a_snapshot_keeps_the_mean_it_had_while_the_sum_is_compressed():
    sampler, *_ = _small_sampler(seed=6)
    mean = PosteriorMean(keep=4, cap=7)  # width 3 per draw: compressed every other add
    for _ in range(3):
        sampler.sweep()
        mean.add(sampler.sample)
    frozen = mean.snapshot()
    before = [t.clone() if torch.is_tensor(t) else t for t in frozen.factors(rank=4)]
    for _ in range(5):
        sampler.sweep()
        mean.add(sampler.sample)
    after = frozen.factors(rank=4)
    assert frozen.count == 3 and mean.count == 8
    for old, new in zip(before, after):
        assert np.array_equal(np.asarray(old), np.asarray(new))
    assert not np.array_equal(mean.factors(rank=4)[3].numpy(), after[3].numpy())


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


def _refit_frame(seed=8):
    frame, _ = make_low_rank_ratings(n_users=60, n_movies=40, density=0.4, seed=seed)
    return frame, Vocabulary.from_values(frame["user_id"]), Vocabulary.from_values(frame["movie_id"])


def test_refit_beside_the_validation_run_equals_a_refit_after_it(monkeypatch):
    frame, users, movies = _refit_frame()
    config = TrainConfig(dim=4, sample_dim=3, sweeps=40, burn_in=2, seed=3)
    together = train(frame, config, users, movies, SCALE, progress=False)
    monkeypatch.setattr(train_module, "_REFITS_ALONGSIDE", set())  # validation first, then the refit
    after = train(frame, config, users, movies, SCALE, progress=False)
    assert together.best_epoch == after.best_epoch
    for name, tensor in together.model.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), after.model.state_dict()[name].numpy(), err_msg=name)
    # The refit's history stops at the chosen sweep, as the one run afterwards does.
    assert together.refit_history["epoch"].tolist() == after.refit_history["epoch"].tolist()
    assert together.refit_history["epoch"].tolist() == list(range(config.burn_in + 1, together.best_epoch + 1))
    np.testing.assert_array_equal(together.refit_history["train_rmse"], after.refit_history["train_rmse"])


def test_refit_beside_the_validation_run_keeps_the_mean_at_an_early_best_sweep(monkeypatch):
    # Force the validation run's best to sweep 5 of 12 (its RMSE worsens after it):
    # the refit must export the mean of its first 5 sweeps, not of all 12.
    frame, users, movies = _refit_frame()
    real_record = train_module._Log.record

    def record(self, epoch, train_rmse, val_rmse):
        if val_rmse is not None:
            val_rmse = 1.0 + abs(epoch - 5)
        return real_record(self, epoch, train_rmse, val_rmse)

    monkeypatch.setattr(train_module._Log, "record", record)
    config = TrainConfig(dim=4, sample_dim=3, sweeps=12, seed=4)
    together = train(frame, config, users, movies, SCALE, progress=False)
    assert together.best_epoch == 5 and together.refit_history["epoch"].tolist() == [1, 2, 3, 4, 5]
    early = train(frame, TrainConfig(dim=4, sample_dim=3, sweeps=5, seed=4, refit=False), users, movies, SCALE, progress=False)
    monkeypatch.setattr(train_module, "_REFITS_ALONGSIDE", set())
    after = train(frame, config, users, movies, SCALE, progress=False)
    for name, tensor in together.model.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), after.model.state_dict()[name].numpy(), err_msg=name)
    assert not np.array_equal(together.model.user_factors.weight.detach().numpy(), early.model.user_factors.weight.detach().numpy())


def test_a_failing_validation_run_fails_training_instead_of_hanging(monkeypatch):
    def broken(self, users, movies):  # only the validation run scores held-out ratings
        raise RuntimeError("validation run broke")

    monkeypatch.setattr(GibbsSampler, "predict", broken)
    frame, users, movies = _refit_frame()
    with pytest.raises(RuntimeError, match="validation run broke"):
        train(frame, TrainConfig(dim=4, sample_dim=3, sweeps=20), users, movies, SCALE, progress=False)


def test_a_failing_refit_stops_the_validation_run(monkeypatch):
    sweeps_by_thread: dict[str, int] = {}
    real_sweep = GibbsSampler.sweep

    def counted_sweep(self):
        name = threading.current_thread().name
        sweeps_by_thread[name] = sweeps_by_thread.get(name, 0) + 1
        real_sweep(self)

    def broken(self, sample):  # only the refit keeps a posterior mean
        raise RuntimeError("refit broke")

    monkeypatch.setattr(GibbsSampler, "sweep", counted_sweep)
    monkeypatch.setattr(PosteriorMean, "add", broken)
    frame, users, movies = _refit_frame()
    with pytest.raises(RuntimeError, match="refit broke"):
        train(frame, TrainConfig(dim=4, sample_dim=3, sweeps=5000), users, movies, SCALE, progress=False)
    validation_sweeps = [count for name, count in sweeps_by_thread.items() if name.startswith("validation-run")]
    assert validation_sweeps and validation_sweeps[0] < 5000
