"""The JSON API under ``/api/v1``, declared with flask-openapi3: each view is checked with the models
(:mod:`web.models`) of its ``path``, ``query`` and ``body``; its docstring goes to ``/api/openapi.json``.
"""

from flask import current_app, make_response
from flask_openapi3 import APIBlueprint
from pydantic import ValidationError

from search import UnknownIdError
from search.similar import EMBEDDING_WEIGHT
from web import models
from web.models import ClusterPath, Error, MoviePath, UserPath
from web.state import state

UNKNOWN = {400: Error, 404: Error}  # a bad value; an unknown id, or clusters not built


def blueprint(requests) -> APIBlueprint:
    """The API's routes, checked with the models ``requests`` (:func:`web.models.request_models`)."""
    api = APIBlueprint("api", __name__, url_prefix="/api/v1")
    NoQuery, Recommend, Similar = requests["none"], requests["recommendations"], requests["similar"]
    Search, Cluster, NewcomerBody = requests["search"], requests["cluster"], requests["newcomer_body"]

    @api.get("/users/<id:user_id>/recommendations", responses={200: models.Recommendations, **UNKNOWN})
    def recommendations(path: UserPath, query: Recommend):
        """Top-k movies for a user, by relevance unless order=rating; each with its raw predicted rating
        (score), relevance and the rated movies that brought it up (because)."""
        return state().recommendations(path.user_id, query)

    @api.post("/recommendations", responses={200: models.NewcomerRecommendations, 400: Error})
    def newcomer_recommendations(query: NoQuery, body: NewcomerBody):
        """Top-k movies for someone not in the bundle, from their ratings: folded in without
        retraining, ordered as the per-user route (score = raw predicted rating, rated movies left
        out). No ratings: the average user's list among widely rated movies."""
        try:
            answer = state().newcomer([(r.movie_id, r.rating) for r in body.ratings], body.k, body.order)
        except (UnknownIdError, ValueError) as err:  # an unknown movie, a rating off the scale, a movie twice
            return {"error": str(err), "status": 400}, 400
        return {**answer, "ratings": [r.model_dump() for r in body.ratings]}

    @api.get(
        "/movies/<id:movie_id>/similar",
        responses={200: models.SimilarMovies, **UNKNOWN},
        summary=f"The k movies most like a movie, itself excluded: {EMBEDDING_WEIGHT:g} x the cosine of the "
        f"embeddings + {1 - EMBEDDING_WEIGHT:g} x the cosine of who rated them in training.",
    )
    def similar(path: MoviePath, query: Similar):
        """The k movies most like a movie (embeddings and who rated them, blended: search.similar)."""
        return state().similar(path.movie_id, query)

    @api.get("/movies", responses={200: models.SearchPage, 400: Error})
    def search(query: Search):
        """Title search, forgiving: exact titles, then prefixes, then titles containing q, then
        every word in any order, then words run together, then close spellings; most rated
        first within each. A blank q gives no items."""
        return state().search(query)

    @api.get("/movies/<id:movie_id>", responses={200: models.Movie, **UNKNOWN})
    def movie(path: MoviePath, query: NoQuery):
        """One movie."""
        return state().catalogue.movie(path.movie_id)

    @api.get("/clusters", responses={200: models.Clusters, **UNKNOWN})
    def clusters(query: NoQuery):
        """Every K-Means cluster of movies (404 before `python -m search build`)."""
        return state().clusters()

    @api.get("/clusters/<id:c>", responses={200: models.ClusterMovies, **UNKNOWN})
    def cluster(path: ClusterPath, query: Cluster):
        """One cluster's summary and all its movies (404: unknown cluster, or not built)."""
        return state().cluster(path.c, query.sort)

    @api.get("/model", responses={200: models.ModelFigures, 400: Error})
    def model(query: NoQuery):
        """The model's figures, the manifest's metrics, training settings, and RMSE per epoch."""
        return state().model()

    @api.get("/healthz", responses={200: models.Health, 400: Error})
    def healthz(query: NoQuery):
        """Liveness: the folder being served, and the last bundle a hot reload refused (or null)."""
        st = state()
        refusal = current_app.extensions["movie_web_watcher"].last_refusal
        return {"status": "ok", "n_users": st.summary["n_users"], "n_movies": st.summary["n_movies"],
                "bundle": str(st.rec.bundle.path), "last_refusal": refusal}  # fmt: skip

    return api


def validation_error(err: ValidationError):
    """flask-openapi3's answer to a refused request: a 400 naming the first bad parameter or body field."""
    error = err.errors(include_url=False)[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
    if error["type"] == "extra_forbidden":
        message = f"unknown {'field' if err.title.endswith('Body') else 'query parameter'} {where!r}"
    else:
        message = f"{where or 'body'}: {error['msg']}"
    return make_response({"error": message, "status": 400}, 400)
