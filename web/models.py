"""What the API takes and answers, as pydantic models: flask-openapi3 checks requests with
them and writes ``/api/openapi.json`` from them, so every limit is stated once, here.

The answers' models describe the plain dicts that the views return (tests check the
answers against them). The request models carry the limits of one app's settings, so
:func:`request_models` builds them when the app is created.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from embedder.schemas import Clustering, ClusterSummary, Errors, Ranking, Settings
from search.catalogue import MEMBER_SORTS

INT64_MAX = 2**63 - 1
MAX_MIN_RATINGS = 1_000_000
"""Largest ``min_ratings`` accepted (more than any movie has)."""
MAX_OFFSET = 10_000_000
"""Largest title-search ``offset`` accepted (more than any catalogue's movies)."""
MAX_BODY_RATINGS = 1000
"""Most ratings a newcomer's request may carry."""


class Strict(BaseModel):
    """Query parameters and bodies: a name the model does not declare is a 400 (a typo
    such as ``includeSeen`` must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Error(BaseModel):
    """Every error answer."""

    error: str
    status: int


# --------------------------------------------------------------------------- path ids


class UserPath(BaseModel):
    user_id: int = Field(ge=0, le=INT64_MAX, description="MovieLens user id")


class MoviePath(BaseModel):
    movie_id: int = Field(ge=0, le=INT64_MAX, description="MovieLens movie id")


class ClusterPath(BaseModel):
    c: int = Field(ge=0, le=INT64_MAX, description="cluster number, 0 to n_clusters - 1")


# --------------------------------------------------------------------------- requests

MinRatings = Annotated[
    int,
    Field(
        ge=0, le=MAX_MIN_RATINGS, description="only movies with at least this many training ratings (0: all)"
    ),
]


class Body(Strict):
    """A JSON body: a string or a bool is not a number."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Rating(Body):
    """One rating in a newcomer's body."""

    movie_id: int = Field(ge=-INT64_MAX, le=INT64_MAX, description="MovieLens movie id")
    rating: float = Field(description="within the bundle's rating scale")


def request_models(k_default: int, k_max: int, search_default: int, search_max: int, max_query: int):
    """The query and body models of one app, with its limits written in (a namespace
    whose attributes are named like the views that take them)."""
    K = Annotated[int, Field(ge=1, le=k_max, description="how many answers")]

    class Recommend(Strict):
        k: K = k_default
        include_seen: bool = Field(False, description="also recommend movies the user rated in training")
        min_ratings: MinRatings = 0

    class Similar(Strict):
        k: K = k_default
        min_ratings: MinRatings = 0

    class Search(Strict):
        # No control characters: no title holds one, and they would match the search's separators.
        q: str = Field(
            max_length=max_query, pattern=r"^[^\x00-\x1f\x7f]*$", description="text to find in titles"
        )
        limit: int = Field(search_default, ge=1, le=search_max, description="most answers")
        offset: int = Field(0, ge=0, le=MAX_OFFSET, description="matches to skip, for the next page")

    class SearchPage(Search):
        q: str = Field("", max_length=max_query, pattern=r"^[^\x00-\x1f\x7f]*$")

    class Cluster(Strict):
        sort: Literal[MEMBER_SORTS] = Field("popularity", description="popularity, title or rating (mean)")

    class NewcomerPage(Strict):
        k: K = k_default

    class NewcomerBody(Body):
        """A newcomer's ratings, each movie once, and how many answers they want."""

        ratings: list[Rating] = Field(max_length=MAX_BODY_RATINGS)
        k: K = k_default

    return SimpleNamespace(
        recommendations=Recommend,
        similar=Similar,
        search=Search,
        search_page=SearchPage,
        cluster=Cluster,
        newcomer_body=NewcomerBody,
        newcomer_page=NewcomerPage,
        none=Strict,
    )


# --------------------------------------------------------------------------- answers


class Movie(BaseModel):
    """One movie."""

    movie_id: int
    title: str
    genres: list[str]
    rating_count: int
    mean_rating: float | None
    cluster: int | None = Field(
        description="null before `python -m search build`, or for an unclustered movie"
    )


class Item(Movie):
    """A movie in an answer, with its score (null where the answer has none)."""

    score: float | None


class Recommendations(BaseModel):
    """A user's top k, best first (score: the raw predicted rating)."""

    user_id: int
    k: int
    include_seen: bool
    min_ratings: int
    items: list[Item]


class NewcomerRecommendations(BaseModel):
    """A newcomer's top k, best first; fallback: no ratings were given."""

    ratings: list[Rating]
    k: int
    fallback: bool
    items: list[Item]


class SimilarMovies(BaseModel):
    """The movies most like one, best first (score: the blend, at most 1)."""

    movie_id: int
    k: int
    min_ratings: int
    items: list[Item]


class SearchPage(BaseModel):
    """One page of matches, best first (score is null); total: every match; more: there
    are matches after this page."""

    query: str
    limit: int
    offset: int
    total: int
    more: bool
    items: list[Item]


class Clusters(BaseModel):
    """All clusters, by number."""

    n_clusters: int
    clusters: list[ClusterSummary]


class ClusterMovies(ClusterSummary):
    """The cluster and its movies in the asked order (score is null)."""

    sort: str
    items: list[Item]


class Epoch(BaseModel):
    """One row of the training history."""

    epoch: int
    train_rmse: float
    val_rmse: float | None
    phase: str = Field(description="training (all training data), or validation then refit")


class ModelFigures(BaseModel):
    """The model's figures, the manifest's metrics, training, settings, clustering and
    ranking figures, and the history."""

    summary: dict
    metrics: dict[str, Errors] = Field(description="per part of the data (train, validation, test, ...)")
    training: dict
    config: Settings
    clusters: Clustering
    ranking: Ranking
    history: list[Epoch]


class Refusal(BaseModel):
    """A bundle that a hot reload refused."""

    bundle: str
    error: str
    at: str


class Health(BaseModel):
    """Serving: the folder being served and the last bundle refused since."""

    status: Literal["ok"]
    n_users: int
    n_movies: int
    bundle: str
    last_refusal: Refusal | None
