"""The model object: one formula for predictions, scores and search vectors."""

from __future__ import annotations

import numpy as np

from embedder import model as model_module
from embedder.model import MFModel
from embedder.vocab import Vocabulary

SCALE = (1.0, 5.0)


def _random_model(n_users=7, n_movies=11, dim=3, seed=0, vocabularies=True) -> MFModel:
    rng = np.random.default_rng(seed)
    f32 = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    vocab = lambda n, first, kind: Vocabulary(np.arange(first, first + n), kind) if vocabularies else None  # noqa: E731
    return MFModel(
        3.5,
        f32(n_users, dim),
        f32(n_movies, dim),
        f32(n_users),
        f32(n_movies),
        SCALE,
        vocab(n_users, 1, "user"),
        vocab(n_movies, 101, "movie"),
    )


def _float64_truth(model: MFModel) -> np.ndarray:
    """``μ + b_u + b_i + p_u·q_i`` of every pair in float64."""
    as64 = lambda array: np.asarray(array, np.float64)  # noqa: E731
    biases = as64(model.user_biases)[:, None] + as64(model.movie_biases)[None, :]
    return model.global_mean + biases + as64(model.user_embeddings) @ as64(model.movie_embeddings).T


def test_predict_is_the_formula_clipped_with_the_fallback_for_unknown_rows():
    model = _random_model()
    truth = _float64_truth(model)
    users, movies = np.array([0, 3, 6, -1, 2, -1]), np.array([1, 10, 4, 5, -1, -1])
    raw = model.predict(users, movies, clip=False)
    assert raw.dtype == np.float32
    np.testing.assert_allclose(raw[:3], truth[users[:3], movies[:3]], atol=1e-5)
    # An unknown user gets μ + b_i, an unknown movie μ + b_u, both unknown μ.
    np.testing.assert_allclose(
        raw[3:], [3.5 + model.movie_biases[5], 3.5 + model.user_biases[2], 3.5], atol=1e-6
    )
    np.testing.assert_array_equal(model.predict(users, movies), np.clip(raw, *SCALE))


def test_predictions_in_many_blocks_equal_one_at_a_time(monkeypatch):
    model = _random_model(seed=1)
    rng = np.random.default_rng(1)
    users, movies = rng.integers(-1, 7, 50), rng.integers(-1, 11, 50)
    whole = model.predict(users, movies)
    monkeypatch.setattr(model_module, "PREDICT_BLOCK", 7)
    np.testing.assert_array_equal(model.predict(users, movies), whole)
    assert model.predict(np.zeros(0, int), np.zeros(0, int)).shape == (0,)


def test_predict_ids_maps_through_the_vocabularies():
    model = _random_model()
    np.testing.assert_array_equal(
        model.predict_ids(np.array([1, 7, 999]), np.array([102, 101, 105])),
        model.predict(np.array([0, 6, -1]), np.array([1, 0, 4])),
    )


def test_scores_are_the_raw_predictions_of_every_movie():
    model = _random_model()
    rows = np.array([4, 0, 4])
    np.testing.assert_allclose(model.scores(rows), _float64_truth(model)[rows], atol=1e-5)


def test_augmented_inner_product_is_the_predicted_rating():
    model = _random_model(n_users=40, n_movies=30, dim=5, seed=2)
    users, items = model.user_vectors(), model.item_vectors()
    assert users.dtype == items.dtype == np.float32 and users.flags.c_contiguous and items.flags.c_contiguous
    assert users.shape == (40, 7) and items.shape == (30, 7)
    np.testing.assert_array_equal(items[:, -2:], np.c_[model.movie_biases, np.ones(30)])
    np.testing.assert_allclose(users @ items.T, _float64_truth(model), atol=1e-4)
    np.testing.assert_allclose(users @ items.T, model.scores(np.arange(40)), atol=1e-4)
    # A user outside the model (a newcomer) gets the same augmentation.
    np.testing.assert_array_equal(
        model.query_vector(model.user_embeddings[3], model.user_biases[3]), users[3]
    )


def test_the_baselines_constructors():
    biases = MFModel.biases(
        3.0, np.array([0.5, -0.5], np.float32), np.array([1.0, 0.0, -1.0], np.float32), SCALE
    )
    assert biases.dim == 0 and biases.user_vocab is None
    np.testing.assert_allclose(biases.scores(np.array([0, 1])), [[4.5, 3.5, 2.5], [3.5, 2.5, 1.5]])
    np.testing.assert_allclose(biases.predict(np.array([0, -1]), np.array([0, 2])), [4.5, 2.0])
    constant = MFModel.constant(3.25, 2, 3, SCALE)
    np.testing.assert_array_equal(constant.predict(np.array([0, 1, -1]), np.array([2, -1, 0])), [3.25] * 3)
