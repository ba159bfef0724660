"""What only Adam (``method="adam"``) does: early stopping on a validation part, then
a refit on all training rows. What every method gives is tested in
``test_contract.py``; the Gibbs sampler, the default method, in ``test_gibbs.py``.
"""

from __future__ import annotations

import pytest

from embedder.config import TrainConfig
from embedder.data import canonical_split
from embedder.train import train
from tests.conftest import make_low_rank_ratings
from tests.embedder.conftest import SCALE, vocabularies


def test_the_best_epoch_has_the_lowest_validation_rmse(adam_fit):
    result = adam_fit.result
    history = result.history
    assert history["val_rmse"].min() == pytest.approx(
        history.loc[history["epoch"] == result.best_epoch, "val_rmse"].item()
    )
    assert result.validation_rmse == pytest.approx(history["val_rmse"].min())


def test_early_stopping_stops_before_the_epoch_cap():
    frame, _ = make_low_rank_ratings(n_users=60, n_movies=40, density=0.5, seed=3)
    train_part, _ = canonical_split(frame)
    users, movies = vocabularies(frame)
    # No regularisation and a big model on tiny data: validation RMSE turns up early.
    config = TrainConfig(method="adam", dim=32, epochs=300, reg=0.0, bias_reg=0.0, lr=0.05, patience=2)
    result = train(train_part, config, users, movies, SCALE, progress=False)
    assert len(result.history) < 300
    assert len(result.history) == result.best_epoch + 2


def test_refit_runs_the_best_epoch_count_on_all_training_rows(adam_fit):
    result = adam_fit.result
    refit = result.refit_history
    assert refit["epoch"].tolist() == list(range(1, result.best_epoch + 1))
    assert refit["val_rmse"].isna().all()  # nothing is held out any more
    assert result.fitted_all
