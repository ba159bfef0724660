"""The quality report: ranking protocol, baselines, neighbours and clusters on planted cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from embedder.model import MFModel
from search.clusters import UNCLUSTERED, genre_nmi
from search.evaluate import (
    HeldOut,
    evaluate_bundle,
    fit_biases,
    genre_sets,
    movie_means,
    neighbour_agreement,
    quality_report,
    ranking_metrics_by_mask,
)
from search.similar import Similarity

SCALE = (1.0, 5.0)


def _planted():
    """Two users, five movies ranked 0 > 1 > 2 > 3 > 4 by everyone."""
    model = MFModel.biases(
        3.0, np.zeros(2, np.float32), np.array([2.0, 1.5, 1.0, 0.5, 0.0], np.float32), SCALE
    )
    seen = sp.csr_matrix(
        (np.array([4.0, 4.0]), ([0, 1], [0, 1])), shape=(2, 5)
    )  # user 0 saw movie 0, user 1 movie 1
    # User 0 likes movies 2 and 4 (ratings >= 4), not 3; user 1 likes nothing, so is not scored.
    test = HeldOut(np.array([0, 0, 0, 1]), np.array([2, 4, 3, 0]), np.array([5.0, 4.0, 2.0, 3.0]))
    return model, seen, test


def test_ranking_excludes_seen_movies_and_scores_users_with_relevant_items():
    model, seen, test = _planted()
    figures = ranking_metrics_by_mask(model.scores, seen, test, {"": np.ones(5, bool)}, k=2)[""]
    # User 0's list: movie 0 is seen, so [1, 2]; one hit (movie 2) in second place.
    discount = 1 / math.log2(3)
    assert figures["users"] == 1
    assert figures["precision"] == pytest.approx(0.5)
    assert figures["recall"] == pytest.approx(0.5)
    assert figures["ndcg"] == pytest.approx(discount / (1 + discount))
    assert figures["coverage"] == pytest.approx(2 / 5)


def test_a_min_ratings_floor_keeps_movies_below_it_out_of_the_lists():
    model, seen, test = _planted()
    allowed = np.array([True, False, True, True, True])  # movie 1 is below the floor
    figures = ranking_metrics_by_mask(model.scores, seen, test, {"": allowed}, k=2)[""]
    # The list becomes [2, 3]: the hit moves to first place.
    discount = 1 / math.log2(3)
    assert figures["precision"] == pytest.approx(0.5)
    assert figures["ndcg"] == pytest.approx(1 / (1 + discount))


def test_several_masks_from_one_pass_equal_one_pass_per_mask():
    rng = np.random.default_rng(3)
    n_users, n_movies = 40, 30
    model = MFModel(
        3.5,
        rng.normal(size=(n_users, 4)).astype(np.float32),
        rng.normal(size=(n_movies, 4)).astype(np.float32),
        rng.normal(size=n_users).astype(np.float32),
        rng.normal(size=n_movies).astype(np.float32),
        SCALE,
    )
    seen = sp.random(n_users, n_movies, density=0.2, format="csr", random_state=3)
    test = HeldOut(
        rng.integers(0, n_users, 200), rng.integers(0, n_movies, 200), rng.integers(1, 6, 200).astype(float)
    )
    masks = {"all": np.ones(n_movies, bool), "some": rng.random(n_movies) < 0.5}
    together = ranking_metrics_by_mask(model.scores, seen, test, masks, k=5, block=7)
    assert together == {
        name: ranking_metrics_by_mask(model.scores, seen, test, {name: mask}, k=5, block=7)[name]
        for name, mask in masks.items()
    }
    assert together["all"] != together["some"]


@pytest.mark.parametrize("seed", range(4))
def test_one_order_for_everyone_gives_the_lists_of_scoring_every_user(seed):
    rng = np.random.default_rng(seed)
    n_users, n_movies = 60, 25
    scores = rng.integers(0, 6, n_movies).astype(
        float
    )  # many ties: the lower movie comes first on both paths
    seen = sp.random(n_users, n_movies, density=rng.choice([0.1, 0.6, 0.95]), format="csr", random_state=seed)
    test = HeldOut(
        rng.integers(0, n_users, 300), rng.integers(0, n_movies, 300), rng.integers(1, 6, 300).astype(float)
    )
    masks = {
        "all": np.ones(n_movies, bool),
        "some": rng.random(n_movies) < 0.4,
        "none": np.zeros(n_movies, bool),
    }
    every_user = lambda rows: np.broadcast_to(scores, (len(rows), n_movies))
    for k in (1, 5, 30):
        assert ranking_metrics_by_mask(scores, seen, test, masks, k=k, block=16) == ranking_metrics_by_mask(
            every_user, seen, test, masks, k=k, block=16
        )


def test_biases_baseline_is_the_fixed_point_of_the_damped_means():
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((12, 9)) < 0.5, rng.integers(1, 6, (12, 9)), 0).astype(float)
    seen = sp.csr_matrix(dense)
    model = fit_biases(seen, SCALE, iterations=300)
    users, movies = seen.nonzero()
    r = dense[users, movies]
    mu, bu, bi = model.global_mean, model.user_biases.astype(float), model.movie_biases.astype(float)
    assert mu == pytest.approx(r.mean())
    # b_i = Σ (r - μ - b_u) / (10 + n_i) and b_u = Σ (r - μ - b_i) / (15 + n_u).
    expected_bi = np.bincount(movies, r - mu - bu[users], 9) / (10 + np.bincount(movies, minlength=9))
    expected_bu = np.bincount(users, r - mu - bi[movies], 12) / (15 + np.bincount(users, minlength=12))
    np.testing.assert_allclose(bi, expected_bi, atol=1e-6)
    np.testing.assert_allclose(bu, expected_bu, atol=1e-6)


def test_popularity_baseline_predicts_the_movie_mean():
    seen = sp.csr_matrix(np.array([[5.0, 0, 2.0], [3.0, 0, 0]]))
    model = movie_means(seen, SCALE)
    predicted = model.predict(np.array([1, 0, 1]), np.array([0, 2, 1]))
    np.testing.assert_allclose(predicted, [4.0, 2.0, 10 / 3], rtol=1e-6)  # movie 1 has no ratings: μ


# Users 0-2 rated the three "A" movies, users 3-5 the three "B" movies; nobody rated movie 6.
GROUP_RATERS = sp.csr_matrix(np.kron(np.eye(2), np.ones((3, 3))) @ np.eye(6, 7) * 4.0)
GENRES_AB = ["A", "A", "A", "B", "B", "B", "A|B"]


def test_neighbours_that_share_genres_beat_random_ones():
    # Three "A" movies along one axis, three "B" movies along another, one untrained (zero) movie.
    Q = np.array([[1, 0.1], [1, 0], [1, -0.1], [0.1, 1], [0, 1], [-0.1, 1], [0, 0]], np.float32)
    genres = genre_sets(pd.Series(GENRES_AB))
    figures = neighbour_agreement(Similarity(Q, GROUP_RATERS), genres, np.ones(7, bool), k=2)
    assert figures["movies"] == 6  # the untrained movie is neither a query nor a neighbour
    assert figures["model"] == pytest.approx(1.0)
    assert figures["random"] < 0.75


def test_neighbour_agreement_scores_the_blend_of_movies_like_this():
    """Embeddings that pair each "A" movie with a "B" movie, but who rated what
    follows the genres: the blend of search.similar (mostly who rated what) finds
    the genre, as Recommender.similar does; the embeddings alone would not."""
    Q = np.array([[1, 0], [0, 1], [-1, 0.1], [1, 0.01], [0.01, 1], [-1, 0.11], [0, 0]], np.float32)
    genres = genre_sets(pd.Series(GENRES_AB))
    figures = neighbour_agreement(Similarity(Q, GROUP_RATERS), genres, np.ones(7, bool), k=1)
    assert figures["model"] == pytest.approx(1.0)
    embeddings_alone = neighbour_agreement(
        Similarity(Q, sp.csr_matrix(np.eye(6, 7))), genres, np.ones(7, bool), k=1
    )
    assert embeddings_alone["model"] == pytest.approx(0.0)  # no shared raters: the embeddings decide
    assert embeddings_alone["random"] == figures["random"]  # the baseline does not depend on the similarity


def test_too_few_movies_to_compare_is_null_not_nan():
    Q = np.eye(3, dtype=np.float32)
    figures = neighbour_agreement(
        Similarity(Q, sp.csr_matrix(np.ones((2, 3)))),
        genre_sets(pd.Series(["A"] * 3)),
        np.ones(3, bool),
        k=10,
    )
    assert figures == {"model": None, "random": None, "movies": 3}
    json.dumps(figures, allow_nan=False)  # manifest.json is strict JSON


def test_clusters_that_follow_the_most_specific_genre_have_nmi_one():
    # Rarest genres: War, War, Comedy, Comedy, Horror, Horror (Drama is the commonest).
    genres = pd.Series(["War|Drama", "War", "Comedy", "Comedy|Drama", "Horror", "Horror|Drama"] * 5)
    figures = genre_nmi(np.array([0, 0, 1, 1, 2, 2] * 5), genres)
    assert figures["clusters"] == 3 and figures["unclustered"] == 0
    assert figures["nmi_genres"] == pytest.approx(1.0)
    assert figures["nmi_random"] < 0.5
    # unclustered movies count nowhere: the same figures with two more, labelled -1, of another genre
    padded = genre_nmi(
        np.array([0, 0, 1, 1, 2, 2] * 5 + [UNCLUSTERED] * 2), pd.concat([genres, pd.Series(["Western"] * 2)])
    )
    assert padded == {**figures, "unclustered": 2}


def test_the_report_carries_the_cluster_figures_search_build_stores():
    model, seen, test = _planted()
    movies = pd.DataFrame({"genres": ["A", "A|B", "B", "", "B"], "rating_count": [30, 1, 25, 40, 2]})
    labels = np.array([0, 0, 1, UNCLUSTERED, 1])
    report = quality_report(model, seen, movies, test, min_ratings=20, cluster_labels=labels)
    assert report["clusters"] == genre_nmi(labels, movies["genres"])
    assert report["clusters"]["clusters"] == 2 and report["clusters"]["unclustered"] == 1


def test_report_has_every_section_and_notes_missing_clusters():
    model, seen, test = _planted()
    movies = pd.DataFrame({"genres": ["A", "A|B", "B", "", "B"], "rating_count": [30, 1, 25, 40, 2]})
    report = quality_report(model, seen, movies, test, min_ratings=20)
    assert set(report) == {"protocol", "rating", "ranking", "similar", "clusters"}
    assert set(report["rating"]) == {"model", "global_mean", "biases", "popularity"}
    assert set(report["ranking"]) == {"0", "20"} and set(report["ranking"]["0"]) == {
        "model",
        "biases",
        "popularity",
    }
    assert "search build" in report["clusters"]["note"]
    json.dumps(report)  # JSON-ready


def test_manifest_evaluation_is_recomputed_from_the_bundle(tiny_bundle):
    manifest = json.loads((Path(tiny_bundle) / "manifest.json").read_text())
    report = evaluate_bundle(tiny_bundle)
    stored = manifest["evaluation"]
    assert stored["rating"]["model"]["rmse"] == pytest.approx(manifest["metrics"]["test"]["rmse"], abs=1e-9)
    for floor in ("0", "20"):
        for name, figures in stored["ranking"][floor].items():
            assert report["quality"]["ranking"][floor][name] == pytest.approx(figures, abs=1e-9), (
                floor,
                name,
            )
    assert report["quality"]["similar"] == stored["similar"]
    # On the planted low-rank data the model ranks far better than the biases alone.
    assert stored["ranking"]["0"]["model"]["ndcg"] > stored["ranking"]["0"]["biases"]["ndcg"]
