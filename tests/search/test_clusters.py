"""K-Means on planted groups, cluster summaries and quality figures."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import normalized_mutual_info_score

from search import Recommender, UnknownIdError
from search.clusters import (
    LABEL_MIN_LIFT,
    LABEL_MIN_SHARE,
    PATTERN_DIMS,
    UNCLUSTERED,
    _genre_mix,
    cluster_quality,
    cluster_summaries,
    genre_lists,
    kmeans_labels,
    movie_map,
    pattern_vectors,
    specific_genre,
)
from tests.search.conftest import N_GROUPS, PER_GROUP

# Zero rows are inserted before these rows of the planted arrays (np.insert positions):
# first, inside a group, twice in a row across a group boundary, and last.
ZERO_AT = [0, 41, 80, 80, 200]


def planted_with_zero_rows(planted: dict, at: list[int] = ZERO_AT) -> dict:
    """A copy of the planted arrays with movies that have no training ratings added:
    zero embeddings, zero bias, no ratings in ``seen``, rating_count 0, and a genre
    of their own ("Unrated") that no clustered movie has.

    ``groups`` is -1 for the added rows, ``zero`` marks them.
    """
    n = len(planted["groups"])
    source = np.insert(np.arange(n), at, -1)  # each new row's planted row, -1 for an added one
    zero = source < 0
    old = source.clip(0)
    keep = lambda values, fill: np.where(
        zero.reshape((-1,) + (1,) * (np.ndim(values) - 1)), fill, np.asarray(values)[old]
    )
    coo = sp.coo_matrix(planted["seen"])
    seen = sp.csr_matrix(
        (coo.data, (coo.row, np.flatnonzero(~zero)[coo.col])), shape=(coo.shape[0], len(source))
    )
    return {
        **planted,
        "zero": zero,
        "groups": keep(planted["groups"], -1),
        "movie_embeddings": keep(planted["movie_embeddings"], 0).astype(np.float32),
        "movie_biases": keep(planted["movie_biases"], 0).astype(np.float32),
        "seen": seen,
        "titles": [
            f"Unrated movie {i} (2001)" if z else planted["titles"][o]
            for i, (z, o) in enumerate(zip(zero, old))
        ],
        "genres": ["Drama|Unrated" if z else planted["genres"][o] for z, o in zip(zero, old)],
        "rating_counts": keep(planted["rating_counts"], 0).astype(np.int64),
    }


def assert_planted_partition(labels: np.ndarray, groups: np.ndarray) -> None:
    """The labels are the planted groups, up to renaming: one cluster per group, whole."""
    pairs = set(zip(labels.tolist(), groups.tolist()))
    assert len(pairs) == N_GROUPS
    assert {c for c, _ in pairs} == set(range(N_GROUPS)) and {g for _, g in pairs} == set(range(N_GROUPS))


def movie_frame(
    genres: list[str], titles: list[str] | None = None, counts: list[int] | None = None
) -> pd.DataFrame:
    n = len(genres)
    return pd.DataFrame(
        {
            "movie_id": np.arange(1, n + 1),
            "title": titles or [f"Movie {i}" for i in range(n)],
            "genres": genres,
            "rating_count": counts if counts is not None else np.arange(n, 0, -1),
            "mean_rating": np.full(n, 3.5),
        }
    )


def test_pattern_vectors_place_movies_by_who_rated_them(planted):
    padded = planted_with_zero_rows(planted)
    zero = padded["zero"]
    vectors = pattern_vectors(padded["seen"])
    assert vectors.dtype == np.float32 and vectors.shape == (len(zero), PATTERN_DIMS)
    assert np.array_equal(~vectors.any(axis=1), zero)  # no training ratings: a zero row
    # each user rates mostly one group's movies: the groups are found from that alone
    labels = kmeans_labels(vectors, N_GROUPS)
    assert_planted_partition(labels[~zero], padded["groups"][~zero])
    # who rated, not how: other rating values give the same vectors; and the same seed, the same vectors
    other = padded["seen"].copy()
    other.data = 6 - other.data
    np.testing.assert_array_equal(vectors, pattern_vectors(other))


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


def test_zero_rows_are_left_unclustered(planted):
    padded = planted_with_zero_rows(planted)
    zero = padded["zero"]
    labels = kmeans_labels(padded["movie_embeddings"], N_GROUPS, seed=0)
    assert labels.dtype == np.int32 and labels.shape == (len(zero),)
    assert (
        np.flatnonzero(labels == UNCLUSTERED).tolist()
        == np.flatnonzero(zero).tolist()
        == [0, 42, 82, 83, 204]
    )
    assert_planted_partition(labels[~zero], padded["groups"][~zero])
    # the zero rows take no part in the fit: the others get what they get without them
    np.testing.assert_array_equal(labels[~zero], kmeans_labels(planted["movie_embeddings"], N_GROUPS, seed=0))


def test_k_is_checked_against_the_clustered_movies():
    vectors = np.array([[1, 0], [0, 0], [0, 1], [-1, 0], [0, 0], [0, -1]], np.float32)
    labels = kmeans_labels(vectors, 4)
    assert labels[[1, 4]].tolist() == [UNCLUSTERED] * 2 and sorted(labels[[0, 2, 3, 5]].tolist()) == [
        0,
        1,
        2,
        3,
    ]
    with pytest.raises(
        ValueError,
        match=r"clusters must be a whole number between 1 and 4, got 5: 2 of 6 movies have no training ratings",
    ):
        kmeans_labels(vectors, 5)
    with pytest.raises(ValueError, match="3 of 3 movies have no training ratings"):
        kmeans_labels(np.zeros((3, 2), np.float32), 1)


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
    summaries = cluster_summaries(labels, movies, 2, np.eye(4))
    json.dumps(summaries)
    first = summaries[0]
    assert first["size"] == 2 and first["cluster"] == 0
    assert [m["movie_id"] for m in first["top_movies"]] == [2, 1]  # most rated first
    assert first["mean_rating"] == pytest.approx((4 * 10 + 2 * 30) / 40)  # over all ratings
    horror = next(g for g in first["genres"] if g["genre"] == "Horror")
    assert horror["share"] == 1.0 and horror["catalogue_share"] == 0.5 and horror["lift"] == 2.0
    assert first["label"].startswith("Horror")
    assert summaries[1]["mean_rating"] == 3.0  # the unrated movie does not count


def test_summaries_and_labels_of_planted_groups_leave_unclustered_movies_out(planted):
    padded = planted_with_zero_rows(planted)
    zero = padded["zero"]
    labels = kmeans_labels(padded["movie_embeddings"], N_GROUPS)
    frame = movie_frame(padded["genres"], padded["titles"], padded["rating_counts"])
    summaries = cluster_summaries(labels, frame, N_GROUPS, padded["movie_embeddings"])
    assert [s["size"] for s in summaries] == [PER_GROUP] * N_GROUPS
    for s in summaries:
        group = padded["groups"][labels == s["cluster"]][0]
        # Drama is every clustered movie's genre (lift 1): named by no label
        assert s["label"] == f"G{group}"
        shares = {g["genre"]: (g["share"], g["catalogue_share"], g["lift"]) for g in s["genres"]}
        assert shares == {
            f"G{group}": (1.0, 1 / N_GROUPS, N_GROUPS),
            "Drama": (1.0, 1.0, 1.0),
        }  # "Unrated" nowhere
        top = {m["movie_id"] for m in s["top_movies"]}
        assert not top & set(frame["movie_id"][zero])
    assert len({s["label"] for s in summaries}) == N_GROUPS


def test_a_genre_names_a_cluster_only_with_a_quarter_of_it_and_a_lift_of_one_and_a_half():
    # one cluster of 20 movies in a catalogue of 120
    inside = Counter(War=6, Western=4, Drama=12, Horror=5, Crime=5)
    catalogue = Counter(War=18, Western=4, Drama=60, Horror=20, Crime=21)
    mix, named = _genre_mix(inside, 20, catalogue, 120)
    lifts = {m["genre"]: (m["share"], m["lift"]) for m in mix}
    assert lifts["War"] == (0.3, 2.0)  # 30%, lift 2: named
    assert lifts["Western"] == (0.2, 6.0)  # lift 6 but 20%: not named
    assert lifts["Drama"] == (0.6, 1.2)  # 60% but lift 1.2: not named
    assert lifts["Horror"] == (LABEL_MIN_SHARE, LABEL_MIN_LIFT)  # exactly at both thresholds: named
    assert lifts["Crime"][0] == 0.25 and lifts["Crime"][1] < LABEL_MIN_LIFT  # lift 1.43: not named
    assert named == ["War", "Horror"]  # highest lift first
    assert [m["genre"] for m in mix][:2] == named  # the nameable genres lead the mix


def test_a_cluster_without_a_genre_that_holds_is_named_by_its_typical_movies():
    # cluster 0: War 3 of 10 (30%; the catalogue 3 of 20, lift 2). Cluster 1: Western 2 of 10 (20%, lift 2),
    # Drama 6 of 10 (60%; the catalogue 10 of 20, lift 1.2): no genre holds.
    genres = ["War"] * 3 + ["Drama"] * 4 + ["Comedy"] * 3 + ["Western"] * 2 + ["Drama"] * 6 + ["Comedy"] * 2
    titles = [f"Movie {i}" for i in range(20)]
    # cluster 1's vectors spread either side of (1, 0, 0); movies 15 and 17 lie on it: its typical movies,
    # though 10 is its most rated (counts fall with the row)
    spread = [0.5, -0.5, 0.5, -0.5, 0.5, 0.0, -0.5, 0.0, 0.5, -0.5]
    vectors = np.array([[0, 0, 1]] * 10 + [[1, a, 0] for a in spread], np.float32)
    labels = np.repeat([0, 1], 10)
    war, other = cluster_summaries(labels, movie_frame(genres, titles), 2, vectors)
    assert war["label"] == "War"
    assert {g["genre"]: g["lift"] for g in other["genres"]} == {"Western": 2.0, "Drama": 1.2, "Comedy": 0.8}
    assert other["label"] == "like Movie 15, Movie 17"
    assert other["top_movies"][0]["title"] == "Movie 10"  # the most rated, but not typical of it
    # no movies, no name to give
    empty = cluster_summaries(labels, movie_frame(genres, titles), 3, vectors)[2]
    assert empty["size"] == 0 and empty["label"] == "(no movies)"


def test_repeated_labels_are_told_apart_by_typical_titles_then_numbers():
    genres = ["Drama|Romance"] * 4 + ["Comedy"] * 4 + ["Drama|Romance"] * 4
    labels = np.repeat([0, 1, 2], 4)
    vectors = np.ones((12, 2), np.float32)  # every movie as typical: the most rated are named
    titles = ["Emma (1996)", "A", "B", "C", "D", "E", "F", "G", "H", "Birdcage, The (1996)", "I", "J"]
    counts = [50, 10, 10, 10, 10, 10, 10, 10, 10, 60, 30, 10]
    found = [s["label"] for s in cluster_summaries(labels, movie_frame(genres, titles, counts), 3, vectors)]
    assert found == [
        "Drama / Romance, like Emma (1996), A",
        "Comedy",
        "Drama / Romance, like Birdcage, The (1996), I",
    ]
    same = ["Hamlet (1996)" if t in ("Emma (1996)", "Birdcage, The (1996)") else "Ran (1985)" for t in titles]
    counts = [50, 30, 10, 10, 10, 10, 10, 10, 10, 60, 30, 10]
    found = [s["label"] for s in cluster_summaries(labels, movie_frame(genres, same, counts), 3, vectors)]
    assert found == [
        "Drama / Romance, like Hamlet (1996), Ran (1985) (cluster 0)",
        "Comedy",
        "Drama / Romance, like Hamlet (1996), Ran (1985) (cluster 2)",
    ]
    # deterministic: the same answer whatever the order the clusters are numbered in
    swapped = np.repeat([2, 1, 0], 4)
    found = [s["label"] for s in cluster_summaries(swapped, movie_frame(genres, titles, counts), 3, vectors)]
    assert found == [
        "Drama / Romance, like Birdcage, The (1996), I",
        "Comedy",
        "Drama / Romance, like Emma (1996), A",
    ]


def test_quality_leaves_unclustered_movies_out(planted):
    padded = planted_with_zero_rows(planted)
    labels = kmeans_labels(padded["movie_embeddings"], N_GROUPS)
    quality = cluster_quality(padded["movie_embeddings"], labels, pd.Series(padded["genres"]))
    alone = cluster_quality(
        planted["movie_embeddings"], labels[~padded["zero"]], pd.Series(planted["genres"])
    )
    assert quality == {**alone, "unclustered": len(ZERO_AT)} and alone["unclustered"] == 0
    assert quality["nmi_genres"] == 1.0  # the clusters are the planted groups


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


def test_catalogue_cluster_api(built_planted, planted):
    rec = Recommender.load(built_planted)
    catalogue = rec.catalogue
    groups = planted["groups"]
    labels = np.array([catalogue.cluster_of(m) for m in rec.movie_ids])
    assert normalized_mutual_info_score(groups, labels) >= 0.9
    summaries = catalogue.clusters()
    assert len(summaries) == N_GROUPS and sum(s["size"] for s in summaries) == N_GROUPS * PER_GROUP
    members = catalogue.cluster_members(labels[0])
    assert sorted(members) == sorted(rec.movie_ids[labels == labels[0]].tolist())
    counts = rec.bundle.movies.set_index("movie_id")["rating_count"]
    assert list(counts[members]) == sorted(counts[members], reverse=True)
    by_title = catalogue.cluster_members(labels[0], sort="title")
    titles = [catalogue.movie(m)["title"].lower() for m in by_title]
    assert titles == sorted(titles)
    means = [
        catalogue.movie(m)["mean_rating"] or -1 for m in catalogue.cluster_members(labels[0], sort="rating")
    ]
    assert means == sorted(means, reverse=True)
    assert catalogue.movie(rec.movie_ids[0])["cluster"] == labels[0]
    with pytest.raises(UnknownIdError, match="unknown cluster 99"):
        catalogue.cluster_members(99)
    with pytest.raises(ValueError, match="sort must be"):
        catalogue.cluster_members(0, sort="size")
    assert (
        catalogue.built
        and len(catalogue.clusters()) == N_GROUPS
        and rec.bundle.manifest["clusters"]["nmi_genres"] >= 0.9
    )
