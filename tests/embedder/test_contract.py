"""What every training method gives, whichever fitted it: ``gibbs`` and ``adam`` pass
the same tests.

Each method fits the same synthetic low-rank ratings with a known noise level, over
vocabularies holding one user and one movie without ratings (``conftest.py``). What
only one method does (the sampler's maths and stopping rule, Adam's early stopping
and refit) is tested in ``test_gibbs.py`` and ``test_train.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embedder.bundle import Bundle
from embedder.config import TrainConfig
from embedder.export import export_bundle, model_arrays, movie_table, seen_matrix
from embedder.metrics import rating_errors
from embedder.model import MFModel
from embedder.train import TrainResult, train
from tests.conftest import make_low_rank_ratings
from tests.embedder.conftest import (
    CONFIGS,
    NOISE,
    SCALE,
    UNRATED_MOVIE,
    UNRATED_USER,
    SyntheticFit,
    vocabularies,
)

ARRAYS = ("user_embeddings", "movie_embeddings", "user_biases", "movie_biases")
TINY = {
    "gibbs": TrainConfig(method="gibbs", dim=4, sample_dim=3, sweeps=8, seed=7),
    "adam": TrainConfig(method="adam", dim=4, epochs=3, seed=7),
}
"""Configurations for the seed test, which trains three times."""


@pytest.fixture(params=list(CONFIGS), scope="module")
def fit(request) -> SyntheticFit:
    return request.getfixturevalue(f"{request.param}_fit")


def _every_pair(model: MFModel) -> tuple[np.ndarray, np.ndarray]:
    """User and movie rows of every (user, movie) pair, user-major."""
    users, movies = np.meshgrid(
        np.arange(len(model.user_biases)), np.arange(len(model.movie_biases)), indexing="ij"
    )
    return users.ravel(), movies.ravel()


def test_the_model_is_float32_arrays_over_the_vocabularies_it_was_given(fit):
    result, model = fit.result, fit.result.model
    assert isinstance(result, TrainResult) and isinstance(model, MFModel)
    assert model.user_vocab is fit.users and model.movie_vocab is fit.movies
    assert model.rating_scale == SCALE
    dim = fit.config.dim  # gibbs samples at sample_dim 4 and exports at rank dim 8
    shapes = {
        "user_embeddings": (len(fit.users), dim),
        "movie_embeddings": (len(fit.movies), dim),
        "user_biases": (len(fit.users),),
        "movie_biases": (len(fit.movies),),
    }
    for name, shape in shapes.items():
        array = getattr(model, name)
        assert array.dtype == np.float32 and array.shape == shape, name
        assert np.isfinite(array).all(), name
    assert model.dim == dim
    # μ is near the truth's, and the torch module (model.pt) holds the same trained parameters.
    assert abs(model.global_mean - fit.truth["mu"]) < 0.1
    assert model.global_mean == float(result.module.global_bias.detach())
    state = {name: tensor.numpy() for name, tensor in result.module.state_dict().items()}
    for name, trained in (("user", result.trained_users), ("movie", result.trained_movies)):
        assert state[f"{name}_factors.weight"].shape == getattr(model, f"{name}_embeddings").shape
        np.testing.assert_array_equal(
            state[f"{name}_factors.weight"][trained], getattr(model, f"{name}_embeddings")[trained]
        )
        np.testing.assert_array_equal(
            state[f"{name}_bias.weight"][trained, 0], getattr(model, f"{name}_biases")[trained]
        )


def test_held_out_rmse_is_near_the_noise_floor(fit):
    test = fit.test
    actual = test["rating"].to_numpy()
    rmse = rating_errors(
        fit.result.model.predict_ids(test["user_id"].to_numpy(), test["movie_id"].to_numpy()), actual
    )["rmse"]
    # A model that learnt nothing (the global mean) is at ~0.78 here; the truth is at 0.1.
    assert rating_errors(np.full(len(test), actual.mean()), actual)["rmse"] > 0.7
    assert rmse < 1.5 * NOISE, rmse


def test_users_and_movies_without_training_ratings_are_zero_rows_with_the_fallback(fit):
    result, model = fit.result, fit.result.model
    np.testing.assert_array_equal(result.trained_users, np.isin(fit.users.ids, fit.train["user_id"]))
    np.testing.assert_array_equal(result.trained_movies, np.isin(fit.movies.ids, fit.train["movie_id"]))
    user, movie = fit.users.number(UNRATED_USER), fit.movies.number(UNRATED_MOVIE)
    assert not result.trained_users[user] and not result.trained_movies[movie]
    assert not model.user_embeddings[user].any() and model.user_biases[user] == 0
    assert not model.movie_embeddings[movie].any() and model.movie_biases[movie] == 0
    assert model.user_embeddings[result.trained_users].any(axis=1).all()  # only those rows are zero
    assert model.movie_embeddings[result.trained_movies].any(axis=1).all()
    # Exactly the fallback of an unknown id (row -1): μ + b_i, μ + b_u, μ.
    n_users, n_movies = len(fit.users), len(fit.movies)
    every_user, every_movie = np.arange(n_users), np.arange(n_movies)
    mu = np.float32(model.global_mean)
    row = model.predict(np.full(n_movies, user), every_movie, clip=False)
    np.testing.assert_array_equal(row, model.predict(np.full(n_movies, -1), every_movie, clip=False))
    np.testing.assert_allclose(row, mu + model.movie_biases, rtol=0, atol=1e-6)
    column = model.predict(every_user, np.full(n_users, movie), clip=False)
    np.testing.assert_array_equal(column, model.predict(every_user, np.full(n_users, -1), clip=False))
    np.testing.assert_allclose(column, mu + model.user_biases, rtol=0, atol=1e-6)
    assert model.predict(np.array([user]), np.array([movie]), clip=False)[0] == mu


@pytest.mark.parametrize("method", list(TINY))
def test_the_same_seed_gives_the_same_model_and_another_seed_another(method):
    frame, _ = make_low_rank_ratings(n_users=50, n_movies=40, seed=4)
    users, movies = vocabularies(frame)
    config = TINY[method]
    a, b, other = (
        train(frame, c, users, movies, SCALE, progress=False)
        for c in (config, config, config.model_copy(update={"seed": 8}))
    )
    for name, tensor in a.module.state_dict().items():
        assert np.array_equal(tensor.numpy(), b.module.state_dict()[name].numpy()), name
    assert a.model.global_mean == b.model.global_mean
    for name in ARRAYS:
        assert np.array_equal(getattr(a.model, name), getattr(b.model, name)), name
    assert not np.array_equal(a.model.user_embeddings, other.model.user_embeddings)


def test_the_history_has_a_row_per_epoch_or_sweep(fit):
    result = fit.result
    history = result.history
    assert list(history.columns) == ["epoch", "train_rmse", "val_rmse", "seconds"]
    assert len(history) >= 2 and history["epoch"].tolist() == list(range(1, len(history) + 1))
    assert 1 <= result.best_epoch <= len(history)
    train_rmse = history["train_rmse"].to_numpy()
    assert np.isfinite(train_rmse).all() and train_rmse[-1] < train_rmse[0] and train_rmse[-1] < 1.5 * NOISE
    assert (history["seconds"] >= 0).all() and history["seconds"].sum() <= result.seconds


def test_the_exported_bundle_loads_as_the_same_model(fit, tmp_path):
    result, model = fit.result, fit.result.model
    arrays = model_arrays(result)
    for name in ARRAYS:
        assert arrays[f"{name}.npy"] is getattr(model, name), (
            name
        )  # exported as they are, not copied or changed
    titles = pd.DataFrame(
        {"movie_id": fit.movies.ids, "title": [f"Movie {i}" for i in fit.movies.ids], "genres": "Drama"}
    )
    dataset = {
        "name": "synthetic",
        "data_arg": "synthetic",
        "checksum": "",
        "n_ratings": len(fit.train) + len(fit.test),
    }
    path, _ = export_bundle(
        tmp_path / "bundle",
        result,
        fit.config,
        dataset,
        movie_table(titles, fit.movies.ids, fit.train),
        fit.train,
        fit.test,
        seen_matrix(result.model, fit.train),
    )
    bundle = Bundle.load(path)
    loaded = bundle.model
    assert bundle.manifest["training"]["method"] == fit.config.method
    assert loaded.global_mean == model.global_mean and loaded.rating_scale == model.rating_scale
    np.testing.assert_array_equal(loaded.user_vocab.ids, fit.users.ids)
    np.testing.assert_array_equal(loaded.movie_vocab.ids, fit.movies.ids)
    users, movies = _every_pair(model)
    users, movies = np.r_[users, -1, 0, -1], np.r_[movies, 0, -1, -1]  # and unknown ids
    np.testing.assert_array_equal(loaded.predict(users, movies), model.predict(users, movies))
    # The manifest's test RMSE is the model's own.
    test = fit.test
    own = rating_errors(
        model.predict_ids(test["user_id"].to_numpy(), test["movie_id"].to_numpy()), test["rating"].to_numpy()
    )["rmse"]
    assert bundle.manifest["metrics"]["test"]["rmse"] == pytest.approx(own, abs=1e-6)


def test_the_score_of_the_augmented_vectors_is_the_predicted_rating(fit):
    model = fit.result.model
    users, items = model.user_vectors(), model.item_vectors()
    assert users.shape == (len(fit.users), model.dim + 2) and items.shape == (len(fit.movies), model.dim + 2)
    predicted = model.predict(*_every_pair(model), clip=False).reshape(len(fit.users), len(fit.movies))
    np.testing.assert_allclose(users @ items.T, predicted, rtol=0, atol=1e-4)
    np.testing.assert_allclose(model.scores(np.arange(len(fit.users))), predicted, rtol=0, atol=1e-4)
