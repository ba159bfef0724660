"""What the API takes and answers, as pydantic models: flask-openapi3 checks requests with them and
writes ``/api/openapi.json`` from them, so every limit is stated once, here. The request models carry
one app's settings (:func:`request_models`); the answers' models describe the dicts the views return.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal
from weakref import WeakKeyDictionary

from pydantic import BaseModel, ConfigDict, Field, create_model

from embedder.schemas import Clustering, ClusterSummary, Errors, Ranking, Settings
from search.catalogue import MEMBER_SORTS

INT64_MAX = 2**63 - 1
MAX_MIN_RATINGS = 1_000_000  # more than any movie has
MAX_OFFSET = 10_000_000  # title search: more than any catalogue's movies
MAX_BODY_RATINGS = 1000  # the most ratings a newcomer's request may carry


class Strict(BaseModel):
    """Query parameters: an undeclared name is a 400 (a typo such as ``includeSeen`` must not pass)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @classmethod
    def model_json_schema(cls, *args, **kwargs) -> dict:
        """Pydantic's schema; the plain one made once (flask-openapi3 asks for it on every request)."""
        if args or kwargs:
            return super().model_json_schema(*args, **kwargs)
        if cls not in _SCHEMAS:
            _SCHEMAS[cls] = super().model_json_schema()
        return _SCHEMAS[cls]


_SCHEMAS: WeakKeyDictionary[type, dict] = WeakKeyDictionary()  # per-app models come and go


class Body(Strict):
    """A JSON body: a string or a bool is not a number."""

    model_config = ConfigDict(extra="forbid", strict=True)


def answer(name: str, doc: str, base: type[BaseModel] = BaseModel, **fields) -> type[BaseModel]:
    """A model of the fields (all required) of a dict that a view returns, or of a path's ids."""
    return create_model(name, __base__=base, __doc__=doc, **{k: (kind, ...) for k, kind in fields.items()})


Error = answer("Error", "Every error answer.", error=str, status=int)
Id = Annotated[int, Field(ge=0, le=INT64_MAX)]
UserPath = answer("UserPath", "A user's id.", user_id=Id)
MoviePath = answer("MoviePath", "A movie's id.", movie_id=Id)
ClusterPath = answer("ClusterPath", "A cluster's number.", c=Id)
Rating = answer(
    "Rating",
    "One rating in a newcomer's body.",
    Body,
    movie_id=Annotated[int, Field(ge=-INT64_MAX, le=INT64_MAX, description="MovieLens movie id")],
    rating=Annotated[float, Field(description="within the bundle's rating scale")],
)
ORDER_HELP = "relevance: what you would watch and like (default); rating: predicted rating"
ORDER = (Literal["relevance", "rating"], Field("relevance", description=ORDER_HELP))


def request_models(k_default: int, k_max: int, search_default: int, search_max: int, max_query: int) -> dict:
    """The query and body models of one app, its limits written in, by the name of the view taking each."""
    query = partial(create_model, __base__=Strict)
    k = (int, Field(k_default, ge=1, le=k_max, description="how many answers"))
    least = (
        int,
        Field(0, ge=0, le=MAX_MIN_RATINGS, description="only movies with this many ratings or more"),
    )
    seen = (bool, Field(False, description="also recommend movies the user rated in training"))
    # No control characters: no title holds one, and they would match the search's separators.
    title = {
        "max_length": max_query,
        "pattern": r"^[^\x00-\x1f\x7f]*$",
        "description": "text to find in titles",
    }
    paging = {
        "limit": (int, Field(search_default, ge=1, le=search_max, description="most answers")),
        "offset": (int, Field(0, ge=0, le=MAX_OFFSET, description="matches to skip, for the next page")),
    }
    sort = (Literal[MEMBER_SORTS], Field("popularity", description="popularity, title or rating (mean)"))
    rated = (list[Rating], Field(max_length=MAX_BODY_RATINGS))
    doc = "A newcomer's ratings, each movie once, how many answers they want and in which order."
    return {
        "recommendations": query("Recommend", k=k, include_seen=seen, min_ratings=least, order=ORDER),
        "similar": query("Similar", k=k, min_ratings=least),
        "search": query("Search", q=(str, Field(**title)), **paging),
        "search_page": query("SearchPage", q=(str, Field("", **title)), **paging),
        "cluster": query("Cluster", sort=sort),
        "newcomer_page": query("NewcomerPage", k=k, order=ORDER),
        "newcomer_body": create_model(
            "NewcomerBody", __base__=Body, __doc__=doc, ratings=rated, k=k, order=ORDER
        ),
        "none": Strict,
    }


Movie = answer(
    "Movie",
    "One movie (cluster: null before `python -m search build`, or for an unclustered movie).",
    **{"movie_id": int, "title": str, "genres": list[str], "rating_count": int},
    **{"mean_rating": float | None, "cluster": int | None},
)
Item = answer(
    "Item", "A movie in an answer and its score (null where the answer has none).", Movie, score=float | None
)
Because = answer("Because", "A rated movie that brought a recommendation up.", movie_id=int, title=str)
Recommended = answer(
    "Recommended",
    "A recommended movie: score is its raw predicted rating, relevance the relevance model's score (null "
    "without one), because up to three of the person's rated movies that added most to it.",
    Item,
    relevance=float | None,
    because=list[Because],
)
Recommendation = answer(
    "Recommendation", "A top k in `order` (relevance unless the bundle has no relevance model).",
    k=int, order=str, items=list[Recommended],
)  # fmt: skip
Recommendations = answer(
    "Recommendations", "A user's top k.", Recommendation, user_id=int, include_seen=bool, min_ratings=int,
)  # fmt: skip
NewcomerRecommendations = answer(
    "NewcomerRecommendations", "A newcomer's top k; fallback: no ratings were given.", Recommendation,
    ratings=list[Rating], fallback=bool,
)  # fmt: skip
Ranked = answer("Ranked", "Movies, best first.", k=int, items=list[Item])
SimilarMovies = answer(
    "SimilarMovies", "The movies most like one (score: the blend).", Ranked, movie_id=int, min_ratings=int
)
SearchPage = answer(
    "SearchPage", "One page of matches (score is null); total: every match; more: more follow.",
    query=str, limit=int, offset=int, total=int, more=bool, items=list[Item],
)  # fmt: skip
Clusters = answer("Clusters", "All clusters, by number.", n_clusters=int, clusters=list[ClusterSummary])
ClusterMovies = answer(
    "ClusterMovies", "A cluster and its movies in the asked order (score is null).", ClusterSummary,
    sort=str, items=list[Item],
)  # fmt: skip
Epoch = answer(
    "Epoch", "A row of the training history (phase: training, or validation then refit).",
    epoch=int, train_rmse=float, val_rmse=float | None, phase=str,
)  # fmt: skip
ModelFigures = answer(
    "ModelFigures", "The model's figures, the manifest's metrics and settings, and the training history.",
    summary=dict, metrics=dict[str, Errors], training=dict, config=Settings, clusters=Clustering,
    ranking=Ranking, history=list[Epoch],
)  # fmt: skip
Refusal = answer("Refusal", "A bundle that a hot reload refused.", bundle=str, error=str, at=str)
Health = answer(
    "Health", "Serving: the folder being served and the last bundle refused since.",
    status=Literal["ok"], n_users=int, n_movies=int, bundle=str, last_refusal=Refusal | None,
)  # fmt: skip
