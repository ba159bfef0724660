"""The OpenAPI 3.1 document of ``/api/v1``, served at ``/api/openapi.json``.

Generated from models: each route's query parameters and the newcomer's body
from the app state's :class:`web.params.Requests`, the very models the views
check requests with (so the document states their limits), and the answers from
the pydantic models below, which exist for this document (the views build plain
dicts; tests check the answers against these models). The routes, with their
answer models and error codes, are the ones ``web.api`` declares. Tests also
check that the document lists exactly the routes the app has, and schemathesis
runs requests from it against a live server.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from embedder.schemas import Clustering, ClusterSummary, Errors, Ranking, Settings
from web.params import Rating, Requests

# --------------------------------------------------------------------------- answers


class Movie(BaseModel):
    """One movie."""

    movie_id: int
    title: str
    genres: list[str]
    rating_count: int
    mean_rating: float | None
    cluster: int | None = Field(description="null before `python -m search build`, or for a movie without training ratings (not clustered)")


class Item(Movie):
    """A movie in an answer, with its score (null where the answer has none)."""

    score: float | None


class Error(BaseModel):
    """Every error answer."""

    error: str
    status: int


class Recommendations(BaseModel):
    """A user's top k, best first."""

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


class Similar(BaseModel):
    """The movies most like one, best first (score = the blend, at most 1); a movie
    without training ratings has nothing to compare and gets no items."""

    movie_id: int
    k: int
    min_ratings: int
    items: list[Item]


class SearchPage(BaseModel):
    """One page of matches, best first (score is null); total: every match; more:
    there are matches after this page."""

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
    phase: str = Field(description="training (one run on all training data), or validation (a held-out part) then refit (all training data)")


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
    """Serving."""

    status: Literal["ok"]
    n_users: int
    n_movies: int
    bundle: str
    last_refusal: Refusal | None


# --------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class Operation:
    """One route, as ``web.api.route`` declares it: its path (OpenAPI style), its
    view's name (the operationId, and the :class:`~web.params.Requests` attribute
    holding its query model), what it does, its answer and error codes."""

    path: str
    name: str
    summary: str
    answer: type[BaseModel]
    errors: dict[int, str]
    body: str | None = None
    """The Requests attribute holding the model of a JSON body (the operation is then a POST)."""


BAD = {400: "A bad or unknown query parameter; the message names it."}
UNKNOWN = {**BAD, 404: "Unknown id."}
NOT_BUILT = "the bundle has no clusters yet (`python -m search build`)"

PATH_IDS = {"user_id": "MovieLens user id", "movie_id": "MovieLens movie id", "c": "Cluster number, 0 to n_clusters - 1"}


# --------------------------------------------------------------------------- the document


class _Untitled(GenerateJsonSchema):
    """Pydantic's JSON schema without the titles it makes up from field names ("Movie Id")."""

    def field_title_should_be_set(self, schema) -> bool:
        return False


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _parameters(path: str, query: type[BaseModel]) -> list[dict]:
    """The path's ids, then the query model's fields (their schemas as the model states them)."""
    found = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": f"{PATH_IDS[name]} (an integer; anything else names nothing and gets 404)",
            "schema": {"type": "integer", "format": "int64"},
        }
        for name in re.findall(r"\{(\w+)\}", path)
    ]
    schema = query.model_json_schema(schema_generator=_Untitled)
    required = set(schema.get("required", ()))
    for name, field in schema["properties"].items():
        field = dict(field)
        description = field.pop("description", "")
        found.append({"name": name, "in": "query", "required": name in required, "description": description, "schema": field})
    return found


def spec(requests: Requests, operations: Sequence[Operation]) -> dict:
    """The document of ``operations``, with the limits of one app state (its
    config and bundle: ``requests``) written in."""
    bodies = {op.body: getattr(requests, op.body) for op in operations if op.body}
    answers = [(model, "serialization") for model in (Error, *(op.answer for op in operations))]
    refs, defs = models_json_schema(
        answers + [(model, "validation") for model in bodies.values()], ref_template="#/components/schemas/{model}", schema_generator=_Untitled
    )
    paths = {}
    for op in operations:
        operation = {
            "operationId": op.name,
            "summary": op.summary,
            "description": "A query parameter not listed here is a 400.",
            "parameters": _parameters(op.path, getattr(requests, op.name)),
            "responses": {
                "200": _json(refs[op.answer, "serialization"], inspect.cleandoc(op.answer.__doc__ or "")),
                **{str(code): _json(refs[Error, "serialization"], text) for code, text in op.errors.items()},
            },
        }
        if op.body:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": refs[bodies[op.body], "validation"]}}}
        paths[op.path] = {"post" if op.body else "get": operation}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Movie embeddings API",
            "version": "1.0.0",
            "description": (
                "Recommendations, similar movies, title search and clusters over one exported bundle. "
                "Ids are the original MovieLens ids. Items have the same fields as `python -m search recommend --json`. "
                'Unknown query parameters get 400. Errors are JSON {"error": message, "status": code}.'
            ),
        },
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {})},
    }
