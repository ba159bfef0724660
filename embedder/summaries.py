"""The shape of a bundle's ``clusters.json``, declared once: ``search build`` writes
these summaries (:func:`search.clusters.cluster_summaries`), the bundle reader
checks them (:func:`embedder.bundle.check_cluster_summaries`) and the API's
OpenAPI document describes them (:mod:`web.openapi`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Strict(BaseModel):
    # strict: a bool or "9" is no count; no NaN or infinity. Extra keys are ignored.
    model_config = ConfigDict(strict=True, allow_inf_nan=False)


class TopMovie(_Strict):
    """One of a cluster's most rated movies."""

    movie_id: int
    title: str
    rating_count: int


class GenreShare(_Strict):
    """A genre's share of a cluster's movies, of all clustered movies, and their ratio."""

    genre: str
    share: float
    catalogue_share: float
    lift: float


class ClusterSummary(_Strict):
    """One K-Means cluster of movies: size, label, mean rating, most rated movies, genre mix with lift."""

    cluster: int
    size: int = Field(ge=0)
    label: str = Field(
        description="up to two genres over-represented in it (at least 15% of its movies, lift above 1), "
        "made unique with its most-rated title where two would read the same"
    )
    mean_rating: float | None
    top_movies: list[TopMovie]
    genres: list[GenreShare]


SUMMARIES = TypeAdapter(list[ClusterSummary])
"""Checks a whole ``clusters.json``."""
