"""Training with Adam (``method="adam"``) on synthetic low-rank data with a known answer.

The Gibbs sampler, the default method, has its own tests in ``test_gibbs.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from embedder.config import TrainConfig
from embedder.metrics import rating_errors
from embedder.split import canonical_split
from embedder.train import train
from embedder.vocab import Vocabulary
from tests.conftest import make_low_rank_ratings

NOISE = 0.1


def fit_synthetic(config: TrainConfig, scale=(-10.0, 20.0)):
    """Train on the canonical split of the default synthetic low-rank ratings."""
    frame, truth = make_low_rank_ratings(noise=NOISE)
    train_part, test_part = canonical_split(frame)
    users = Vocabulary.from_values(frame["user_id"], "user")
    movies = Vocabulary.from_values(frame["movie_id"], "movie")
    result = train(train_part, config, users, movies, scale, progress=False)
    return result, train_part, test_part, truth


@pytest.fixture(scope="module")
def fitted():
    return fit_synthetic(TrainConfig(method="adam", dim=8, epochs=60, reg=0.01, lr=0.01, patience=5, seed=1))


def _predict(result, part):
    import torch

    u = torch.as_tensor(result.users.numbers(part["user_id"].to_numpy()))
    m = torch.as_tensor(result.movies.numbers(part["movie_id"].to_numpy()))
    with torch.no_grad():
        return result.module(u, m).numpy()


def test_reaches_the_noise_floor_on_held_out_ratings(fitted):
    result, _, test_part, _ = fitted
    test_rmse = rating_errors(_predict(result, test_part), test_part["rating"].to_numpy())["rmse"]
    # A model that learnt nothing (the global mean) is at ~0.78 here; the noise floor is 0.1.
    baseline = rating_errors(np.full(len(test_part), test_part["rating"].mean()), test_part["rating"].to_numpy())["rmse"]
    assert baseline > 0.7
    assert test_rmse < 2 * NOISE, test_rmse


def test_global_bias_starts_at_the_training_mean_and_history_is_recorded(fitted):
    result, train_part, _, truth = fitted
    assert abs(float(result.module.global_bias.detach()) - truth["mu"]) < 0.5
    assert result.model.global_mean == float(result.module.global_bias.detach())
    history = result.history
    assert list(history.columns) == ["epoch", "train_rmse", "val_rmse", "seconds"]
    assert 1 <= result.best_epoch <= len(history)
    assert history["val_rmse"].min() == pytest.approx(history.loc[history["epoch"] == result.best_epoch, "val_rmse"].item())
    assert history["train_rmse"].iloc[-1] < history["train_rmse"].iloc[0]


def test_early_stopping_stops_before_the_epoch_cap():
    frame, _ = make_low_rank_ratings(n_users=60, n_movies=40, density=0.5, seed=3)
    train_part, _ = canonical_split(frame)
    users = Vocabulary.from_values(frame["user_id"])
    movies = Vocabulary.from_values(frame["movie_id"])
    # No regularisation and a big model on tiny data: validation RMSE turns up early.
    config = TrainConfig(method="adam", dim=32, epochs=300, reg=0.0, bias_reg=0.0, lr=0.05, patience=2)
    result = train(train_part, config, users, movies, (-10.0, 20.0), progress=False)
    assert len(result.history) < 300
    assert len(result.history) == result.best_epoch + 2


def test_same_seed_same_model():
    frame, _ = make_low_rank_ratings(n_users=50, n_movies=40, seed=4)
    users = Vocabulary.from_values(frame["user_id"])
    movies = Vocabulary.from_values(frame["movie_id"])
    config = TrainConfig(method="adam", dim=4, epochs=3, seed=7)
    a = train(frame, config, users, movies, (-10.0, 20.0), progress=False)
    b = train(frame, config, users, movies, (-10.0, 20.0), progress=False)
    for name, tensor in a.module.state_dict().items():
        assert np.array_equal(tensor.numpy(), b.module.state_dict()[name].numpy()), name


def test_refit_runs_the_best_epoch_count_on_all_training_rows(fitted):
    result, train_part, _, _ = fitted
    refit = result.refit_history
    assert refit["epoch"].tolist() == list(range(1, result.best_epoch + 1))
    assert refit["val_rmse"].isna().all()  # nothing is held out any more
    assert result.trained_users.sum() == train_part["user_id"].nunique()
    assert result.validation_rmse == pytest.approx(result.history["val_rmse"].min())
