"""The JSON API under ``/api/v1``, described by ``/api/openapi.json``.

Each route is declared once, by :func:`route`: its path, its answer model and
error codes (:mod:`web.openapi`), and its view, whose docstring is its summary
in the OpenAPI document. Every route takes only the query parameters that its
model declares (the attribute of :class:`web.params.Requests` named like the
view); any other parameter is a 400 naming it (a typo must not be silently
ignored). Errors are ``{"error": message, "status": code}``.
"""

from __future__ import annotations

import re
from functools import lru_cache, wraps

from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel

from search.similar import EMBEDDING_WEIGHT
from web import answers, openapi, params
from web.openapi import BAD, NOT_BUILT, UNKNOWN, Operation
from web.params import Requests
from web.state import state

bp = Blueprint("api", __name__, url_prefix="/api/v1")

OPERATIONS: list[Operation] = []
"""Every route of the API, in the order declared: what the OpenAPI document describes."""


def route(rule: str, answer: type[BaseModel], errors: dict[int, str], body: str | None = None, summary: str | None = None):
    """Declare the route ``rule``: a GET, or with ``body`` (the :class:`~web.params.Requests`
    attribute holding the JSON body's model) a POST. Its ``answer`` model, ``errors``
    and ``summary`` (the view's docstring by default) go to the OpenAPI document.
    The view takes only the query parameters of its model (400 for others); a
    :class:`~web.answers.Ranked` answer is written as JSON with its item rows."""

    def register(view):
        name = view.__name__
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)
        OPERATIONS.append(Operation(path, name, summary or " ".join((view.__doc__ or "").split()), answer, errors, body))

        @wraps(view)
        def checked(*args, **kwargs):
            params.reject_unknown(request.args, getattr(state().requests, name))
            result = view(*args, **kwargs)
            if isinstance(result, answers.Ranked):
                return jsonify(result.as_dict())
            return result

        return (bp.post if body else bp.get)(rule)(checked)

    return register


@route("/users/<user_id>/recommendations", openapi.Recommendations, UNKNOWN)
def recommendations(user_id: str):
    """Top-k movies for a user by predicted rating (score = raw predicted rating)."""
    return answers.recommendations(user_id, request.args)


@route(
    "/recommendations",
    openapi.NewcomerRecommendations,
    {400: "A bad body (an unknown movie, a rating off the scale, a movie twice, a bad k) or any query parameter; the message names it."},
    body="newcomer_body",
)
def newcomer_recommendations():
    """Top-k movies for someone not in the bundle, from their ratings: folded in without
    retraining (score = raw predicted rating, rated movies left out). No ratings: the
    average user's list among widely rated movies."""
    return answers.newcomer_recommendations(request.get_json(silent=True))  # None when the body is not JSON: a 400


@route(
    "/movies/<movie_id>/similar",
    openapi.Similar,
    UNKNOWN,
    summary=f"The k movies most like a movie, the movie itself excluded: {EMBEDDING_WEIGHT:g} x the cosine of the two movies' "
    f"embeddings + {1 - EMBEDDING_WEIGHT:g} x the cosine of who rated them in training (the users who rated both "
    "/ sqrt(n_i n_j), n: a movie's training ratings).",
)
def similar(movie_id: str):
    """The k movies most like a movie (embeddings and who rated them, blended: search.similar)."""
    return answers.similar(movie_id, request.args)


@route("/movies", openapi.SearchPage, BAD)
def search():
    """Title search, forgiving: exact titles, then prefixes, then titles containing q, then
    every word in any order (numbers as digits), then words run together, then close
    spellings; most rated first within each. A blank q gives no items."""
    return answers.search(request.args)


@route("/movies/<movie_id>", openapi.Movie, UNKNOWN)
def movie(movie_id: str):
    """One movie."""
    return answers.movie(movie_id)


@route("/clusters", openapi.Clusters, {**BAD, 404: NOT_BUILT.capitalize() + "."})
def clusters():
    """Every K-Means cluster of movies."""
    return answers.clusters()


@route("/clusters/<c>", openapi.ClusterMovies, {**BAD, 404: f"Unknown cluster, or {NOT_BUILT}."})
def cluster(c: str):
    """One cluster's summary and all its movies."""
    return answers.cluster(c, request.args)


@route("/model", openapi.ModelFigures, BAD)
def model():
    """The model's figures, the manifest's metrics, training settings, and train/validation RMSE per epoch."""
    return answers.model()


@route("/healthz", openapi.Health, BAD)
def healthz():
    """Liveness: the bundle is loaded; the folder being served, and the last bundle refused
    by a hot reload (null if none since)."""
    st = state()
    watcher = current_app.extensions["movie_web_watcher"]
    return {
        "status": "ok",
        "n_users": st.summary["n_users"],
        "n_movies": st.summary["n_movies"],
        "bundle": str(st.rec.bundle.path),
        "last_refusal": watcher.last_refusal,
    }


@lru_cache(maxsize=4)
def _document(requests: Requests) -> dict:
    return openapi.spec(requests, OPERATIONS)


def openapi_document():
    """The OpenAPI 3.1 description of this API (limits taken from the app's config and
    bundle), generated once per loaded bundle."""
    return _document(state().requests)
