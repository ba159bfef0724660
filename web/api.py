"""The JSON API under ``/api/v1``, described by ``/api/openapi.json``.

Every route takes only the query parameters that its model declares (the
attribute of :class:`web.params.Requests` named like the view); any other
parameter is a 400 naming it (a typo must not be silently ignored). Errors are
``{"error": message, "status": code}``.
"""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, current_app, jsonify, request

from web import answers, params
from web.state import state

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def route(rule: str):
    """GET ``rule``; the view takes only the query parameters of its model
    (400 for others); a :class:`~web.answers.Ranked` answer is written as JSON
    with its item rows."""

    def register(view):
        name = view.__name__

        @wraps(view)
        def checked(*args, **kwargs):
            params.reject_unknown(request.args, getattr(state().requests, name))
            answer = view(*args, **kwargs)
            if isinstance(answer, answers.Ranked):
                return jsonify(answer.as_dict())
            return answer

        return bp.get(rule)(checked)

    return register


@route("/users/<user_id>/recommendations")
def recommendations(user_id: str):
    """Top-k movies for a user by predicted rating."""
    return answers.recommendations(user_id, request.args)


@bp.post("/recommendations")
def newcomer_recommendations():
    """Top-k movies for a newcomer from the ratings in the JSON body."""
    params.reject_unknown(request.args, state().requests.newcomer_recommendations)
    body = request.get_json(silent=True)  # None when the body is not JSON: a 400 below
    return jsonify(answers.newcomer_recommendations(body).as_dict())


@route("/movies/<movie_id>/similar")
def similar(movie_id: str):
    """The k movies most like a movie (embeddings and who rated them, blended: search.similar)."""
    return answers.similar(movie_id, request.args)


@route("/movies")
def search():
    """Movies whose title contains ``q``."""
    return answers.search(request.args)


@route("/movies/<movie_id>")
def movie(movie_id: str):
    """One movie."""
    return answers.movie(movie_id)


@route("/clusters")
def clusters():
    """Every cluster's summary."""
    return answers.clusters()


@route("/clusters/<c>")
def cluster(c: str):
    """One cluster's summary and all its movies."""
    return answers.cluster(c, request.args)


@route("/model")
def model():
    """The model's figures, metrics and training history."""
    return answers.model()


@route("/healthz")
def healthz():
    """Liveness: the bundle is loaded and answers; which bundle, and the last one refused."""
    st = state()
    watcher = current_app.extensions["movie_web_watcher"]
    return {
        "status": "ok",
        "n_users": st.summary["n_users"],
        "n_movies": st.summary["n_movies"],
        "bundle": str(st.rec.bundle.path),
        "last_refusal": watcher.last_refusal,
    }


def openapi_document():
    """The OpenAPI 3.1 description of this API (limits taken from the app's config and bundle)."""
    return state().openapi
