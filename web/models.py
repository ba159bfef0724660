"""What the API takes and answers, as pydantic models: flask-openapi3 checks requests with
them and writes ``/api/openapi.json`` from them, so every limit is stated once, here.

The answers' models describe the plain dicts that the views return (tests check the
answers against them). The request models carry the limits of one app's settings, so
:func:`request_models` builds them when the app is created.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

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


Error = create_model("Error", __doc__="Every error answer.", error=(str, ...), status=(int, ...))

# --------------------------------------------------------------------------- path ids


Id = Annotated[int, Field(ge=0, le=INT64_MAX)]
UserPath = create_model("UserPath", user_id=(Id, ...))
MoviePath = create_model("MoviePath", movie_id=(Id, ...))
ClusterPath = create_model("ClusterPath", c=(Id, ...))


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
    """One movie (cluster: null before `python -m search build`, or for an unclustered movie)."""

    movie_id: int
    title: str
    genres: list[str]
    rating_count: int
    mean_rating: float | None
    cluster: int | None


class Item(Movie):
    """A movie in an answer, with its score (null where the answer has none)."""

    score: float | None


class Ranked(BaseModel):
    k: int
    items: list[Item]


class Recommendations(Ranked):
    """A user's top k, best first (score: the raw predicted rating)."""

    user_id: int
    include_seen: bool
    min_ratings: int


class NewcomerRecommendations(Ranked):
    """A newcomer's top k, best first; fallback: no ratings were given."""

    ratings: list[Rating]
    fallback: bool


class SimilarMovies(Ranked):
    """The movies most like one, best first (score: the blend, at most 1)."""

    movie_id: int
    min_ratings: int


class SearchPage(BaseModel):
    """One page of matches, best first (score is null); total: every match; more: more follow."""

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
    """One row of the training history (phase: training, or validation then refit)."""

    epoch: int
    train_rmse: float
    val_rmse: float | None
    phase: str


class ModelFigures(BaseModel):
    """The model's figures, the manifest's metrics, training, settings, clustering, ranking, history."""

    summary: dict
    metrics: dict[str, Errors]
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
