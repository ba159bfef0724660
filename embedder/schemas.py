"""The shapes of a bundle's JSON files: the parts of ``manifest.json`` that readers index into, and
``clusters.json``. :meth:`embedder.bundle.Bundle.load` checks them strictly (a bool or ``"9"`` is no number,
NaN none either); keys not declared here are free. The web API describes its answers with them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False)


class FileEntry(_Strict):
    """A listed file: its checksum (and size)."""

    sha256: str
    bytes: int | None = None


class Dataset(_Strict):
    """Where the ratings came from."""

    name: str | None = None


class Settings(_Strict):
    """The training settings (``embedder.config.TrainConfig``'s fields)."""

    method: str | None = Field(None, description="gibbs or adam")


class Errors(_Strict):
    """A model's rating errors on one part of the data (null: not measured)."""

    rmse: float | None = None
    mae: float | None = None


Ranking = dict[str, dict[str, dict[str, float]]]
"""Ranking figures: per rating floor ("0", "4"), per ranker ("model", "popularity", ...), metric -> value."""


class Evaluation(_Strict):
    """How the model ranks held-out movies."""

    ranking: Ranking = {}


class IndexInfo(_Strict):
    """The search index that ``search build`` wrote."""

    kind: str | None = None
    file: str | None = None
    params: dict = {}


class Clustering(_Strict):
    """The K-Means clustering of the movies and its quality (null: not measured)."""

    k: int | None = None
    seed: int | None = None
    silhouette: float | None = None
    nmi_genres: float | None = None
    nmi_random: float | None = None


class RelevanceInfo(_Strict):
    """The relevance model's settings (embedder/relevance.py): λ chosen on validation, β."""

    regularization: float
    rating_weight: float
    validation_ndcg: dict[str, float] = {}


class Manifest(_Strict):
    """What a bundle's ``manifest.json`` must hold for its readers."""

    schema_version: int
    files: dict[str, FileEntry]
    global_mean: float
    rating_scale: list[float] = Field(min_length=2, max_length=2, description="[lowest, highest]")
    created: str | None = None
    updated: str | None = None
    dataset: Dataset = Dataset()
    config: Settings = Settings()
    training: dict = {}
    metrics: dict[str, Errors] = {}
    evaluation: Evaluation = Evaluation()
    index: IndexInfo = IndexInfo()
    clusters: Clustering = Clustering()
    relevance: RelevanceInfo | None = None


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
        description="up to two genres that hold in it (25% of its movies or more, 1.5x its catalogue share), "
        "else 'like A, B', two typical movies; made unique with those titles, then its number"
    )
    mean_rating: float | None
    top_movies: list[TopMovie]
    genres: list[GenreShare]
