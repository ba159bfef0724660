"""K-Means on planted groups, cluster summaries and quality figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import normalized_mutual_info_score

from search import Recommender, UnknownIdError
from search.clusters import (
    cluster_quality,
    cluster_summaries,
    genre_lists,
    kmeans_labels,
    movie_map,
    specific_genre,
)
from tests.search.conftest import N_GROUPS, PER_GROUP


def test_kmeans_recovers_planted_groups(planted):
    labels = kmeans_labels(planted["movie_embeddings"], N_GROUPS, seed=0)
    assert labels.dtype == np.int32 and labels.shape == planted["groups"].shape
    assert normalized_mutual_info_score(planted["groups"], labels) >= 0.9


def test_kmeans_is_seeded_and_checks_k(planted):
    a = kmeans_labels(planted["movie_embeddings"], N_GROUPS, seed=3)
    assert np.array_equal(a, kmeans_labels(planted["movie_embeddings"], N_GROUPS, seed=3))
    for bad in (0, len(planted["groups"]) + 1, 2.5):
        with pytest.raises(ValueError, match="clusters must be"):
            kmeans_labels(planted["movie_embeddings"], bad)


def test_zero_rows_get_a_cluster_without_breaking_the_fit():
    rng = np.random.default_rng(0)
    vectors = np.vstack([rng.normal(size=(30, 4)), np.zeros((3, 4))]).astype(np.float32)
    labels = kmeans_labels(vectors, 3)
    assert labels.shape == (33,) and labels.min() >= 0 and labels.max() < 3


def test_summaries_describe_each_cluster():
    movies = pd.DataFrame(
        {
            "movie_id": [1, 2, 3, 4],
            "title": ["A", "B", "C", "D"],
            "genres": ["Horror|Drama", "Horror", "Comedy", "(no genres listed)"],
            "rating_count": [10, 30, 5, 0],
            "mean_rating": [4.0, 2.0, 3.0, np.nan],
        }
    )
    labels = np.array([0, 0, 1, 1])
    summaries = cluster_summaries(labels, movies, 2)
    json.dumps(summaries)
    first = summaries[0]
    assert first["size"] == 2 and first["cluster"] == 0
    assert [m["movie_id"] for m in first["top_movies"]] == [2, 1]  # most rated first
    assert first["mean_rating"] == pytest.approx((4 * 10 + 2 * 30) / 40)  # over all ratings
    horror = next(g for g in first["genres"] if g["genre"] == "Horror")
    assert horror["share"] == 1.0 and horror["catalogue_share"] == 0.5 and horror["lift"] == 2.0
    assert first["label"].startswith("Horror")
    assert summaries[1]["mean_rating"] == 3.0  # the unrated movie does not count


def test_quality_against_a_random_labelling(planted):
    labels = kmeans_labels(planted["movie_embeddings"], N_GROUPS)
    quality = cluster_quality(planted["movie_embeddings"], labels, pd.Series(planted["genres"]))
    assert quality["nmi_genres"] >= 0.9
    assert quality["nmi_random"] < 0.2
    assert quality["silhouette"] > 0.5


def test_genre_helpers():
    lists = genre_lists(pd.Series(["A|B", "", None, "(no genres listed)", "B"]))
    assert lists == [["A", "B"], [], [], [], ["B"]]
    assert specific_genre(lists) == ["A", "", "", "", "B"]


def test_movie_map_is_two_columns(planted):
    points = movie_map(planted["movie_embeddings"])
    assert points.shape == (len(planted["groups"]), 2) and points.dtype == np.float32


def test_recommender_cluster_api(built_planted, planted):
    rec = Recommender.load(built_planted)
    groups = planted["groups"]
    labels = np.array([rec.cluster_of(m) for m in rec.movie_ids])
    assert normalized_mutual_info_score(groups, labels) >= 0.9
    summaries = rec.clusters()
    assert len(summaries) == N_GROUPS and sum(s["size"] for s in summaries) == N_GROUPS * PER_GROUP
    members = rec.cluster_members(labels[0])
    assert sorted(members) == sorted(rec.movie_ids[labels == labels[0]].tolist())
    counts = rec.bundle.movies.set_index("movie_id")["rating_count"]
    assert list(counts[members]) == sorted(counts[members], reverse=True)
    by_title = rec.cluster_members(labels[0], sort="title")
    titles = [rec.movie(m)["title"].lower() for m in by_title]
    assert titles == sorted(titles)
    means = [rec.movie(m)["mean_rating"] or -1 for m in rec.cluster_members(labels[0], sort="rating")]
    assert means == sorted(means, reverse=True)
    assert rec.movie(rec.movie_ids[0])["cluster"] == labels[0]
    with pytest.raises(UnknownIdError, match="unknown cluster 99"):
        rec.cluster_members(99)
    with pytest.raises(ValueError, match="sort must be"):
        rec.cluster_members(0, sort="size")
    summary = rec.summary()
    assert summary["built"] and summary["n_clusters"] == N_GROUPS and summary["nmi_genres"] >= 0.9
