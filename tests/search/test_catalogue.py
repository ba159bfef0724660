"""The Catalogue: title search, movie rows, users' ratings, clusters before build, errors.
(The clusters of a built bundle: test_clusters.py and test_build.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedder.vocab import UnknownIdError
from search import Catalogue, NotBuiltError, Recommender
from tests.conftest import write_synthetic_bundle


@pytest.fixture(scope="module")
def catalogue(tiny_bundle):
    return Catalogue.load(tiny_bundle)


@pytest.fixture(scope="module")
def titled(tmp_path_factory):
    """A recommender (for real results) over six titled movies; its ``catalogue`` is under test."""
    titles = [
        "Star Wars (1977)",
        "Star Trek: First Contact (1996)",
        "Lone Star (1996)",
        "Godfather, The (1972)",
        "Godfather: Part II, The (1974)",
        "Stargate (1994)",
    ]
    path = tmp_path_factory.mktemp("titled") / "bundle"
    write_synthetic_bundle(
        path,
        np.ones((2, 3), np.float32),
        np.eye(6, 3, dtype=np.float32),
        titles=titles,
        genres=["Action|Sci-Fi", "Sci-Fi", "Drama", "Crime|Drama", "", "Sci-Fi"],
        rating_counts=np.array([500, 300, 50, 400, 200, 0]),
    )
    return Recommender.load(path)


def test_a_recommender_holds_the_catalogue_of_its_bundle(tiny_bundle, catalogue):
    rec = Recommender.load(tiny_bundle)
    assert isinstance(rec.catalogue, Catalogue) and rec.catalogue.bundle is rec.bundle
    assert np.array_equal(rec.catalogue.movie_ids, rec.movie_ids)
    assert rec.catalogue.items(rec.movie_ids[:5]) == catalogue.items(
        catalogue.movie_ids[:5]
    )  # same as one loaded alone


def test_find_movies_ranks_exact_then_prefix_then_popularity(titled):
    catalogue = titled.catalogue
    assert catalogue.find_movies("STAR WARS") == [101]
    assert catalogue.find_movies("star") == [101, 102, 106, 103]  # prefix by popularity, then contains
    assert catalogue.find_movies("the godfather") == [104, 105]  # "Godfather, The" read as "The Godfather"
    assert catalogue.find_movies("godfather") == [104, 105]
    assert catalogue.find_movies("star", limit=2) == [101, 102]
    assert catalogue.find_movies("no such film") == []
    with pytest.raises(ValueError):
        catalogue.find_movies("  ")


def test_items_and_movie_rows_are_plain_json(titled):
    catalogue = titled.catalogue
    ids, scores, _ = titled.recommend(1, k=6)
    items = catalogue.items(ids, scores)
    assert [i["movie_id"] for i in items] == ids.tolist()
    json.dumps(items)  # plain Python types only
    first = items[0]
    assert set(first) == {"movie_id", "title", "score", "genres", "rating_count", "mean_rating", "cluster"}
    assert list(first) == [
        "movie_id",
        "title",
        "genres",
        "rating_count",
        "mean_rating",
        "cluster",
        "score",
    ]  # the API's order
    assert isinstance(first["score"], float) and isinstance(first["movie_id"], int)
    assert first["cluster"] is None  # not built
    stargate = catalogue.movie(106)
    assert (
        stargate["genres"] == ["Sci-Fi"] and stargate["rating_count"] == 0 and stargate["mean_rating"] is None
    )
    assert catalogue.movie(105)["genres"] == []
    assert (
        catalogue.items(np.array([101, -1]), np.array([4.0, -np.inf]))[0]["movie_id"] == 101
    )  # padding dropped
    unscored = catalogue.items(np.array([103, -1, 101]))  # a title search has no scores
    assert [(i["movie_id"], i["score"]) for i in unscored] == [(103, None), (101, None)]
    assert [{**i, "score": None} for i in catalogue.items([103, 101], [1.0, 2.0])] == unscored
    with pytest.raises(ValueError, match="differ in length"):
        catalogue.items([101, 102], [1.0])


def test_rows_are_fresh_copies(titled):
    catalogue = titled.catalogue
    catalogue.movie(101)["genres"].append("Changed")
    catalogue.items([101])[0]["genres"].clear()
    assert catalogue.movie(101)["genres"] == ["Action", "Sci-Fi"]


def test_unknown_movie_is_a_key_error_naming_it(catalogue):
    for call in (catalogue.movie, lambda m: catalogue.items([m], [1.0])):
        with pytest.raises(UnknownIdError, match="unknown movie 424242"):
            call(424242)
    with pytest.raises(ValueError, match="one movie id"):
        catalogue.movie("abc")


def test_user_ratings_highest_first(planted_bundle, planted):
    catalogue = Catalogue.load(planted_bundle)
    user = catalogue.bundle.user_ids[3]
    ids, ratings = catalogue.user_ratings(user)
    row = planted["seen"][3]
    assert sorted(ids.tolist()) == sorted(catalogue.movie_ids[row.indices].tolist())
    assert np.all(np.diff(ratings) <= 0)
    assert len(catalogue.user_ratings(user, limit=2)[0]) == min(2, row.nnz)
    with pytest.raises(UnknownIdError, match="unknown user 99999"):
        catalogue.user_ratings(99999)
    with pytest.raises(ValueError, match="one user id"):
        catalogue.user_ratings([user, user])


def test_clusters_before_build_say_how_to_build(catalogue):
    assert catalogue.built is False
    for call in (
        catalogue.clusters,
        lambda: catalogue.cluster_of(catalogue.movie_ids[0]),
        lambda: catalogue.cluster_members(0),
    ):
        with pytest.raises(NotBuiltError, match="python -m search build"):
            call()
