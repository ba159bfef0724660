"""Server-rendered HTML pages (Jinja autoescaping on: titles and queries are escaped).

Unknown query parameters are ignored here (browsers and link trackers add
their own); bad values of known ones get the same 400 as on the API.
"""

from __future__ import annotations

import io

from flask import Blueprint, Response, current_app, redirect, render_template, request, send_file, url_for
from werkzeug.exceptions import NotFound

from search import BundleError
from web import answers, params
from web.charts import colour
from web.state import state

bp = Blueprint("pages", __name__)

FEW_RATINGS = 10
"""Below this many training ratings a movie page says its neighbours are uncertain."""


# Defence in depth behind autoescaping: no inline or foreign scripts run even
# if some text slipped through unescaped. Inline style attributes (the cluster
# colour swatches) are allowed; images may be our own files or data: URLs.
CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


@bp.after_app_request
def _security_headers(response: Response) -> Response:
    """nosniff and a same-origin referrer policy on every answer; CSP on HTML answers
    (pages and HTML error pages).

    ``content_type`` is read as it is: ``mimetype`` would parse the header, a
    measurable cost on every API answer.
    """
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if response.content_type.startswith("text/html"):
        response.headers["Content-Security-Policy"] = CSP
    return response


@bp.app_context_processor
def _common() -> dict:
    """Values every template may use (the footer shows the bundle's figures)."""
    return {"summary": state().summary}


@bp.app_template_global()
def cluster_name(c: int) -> str:
    """A cluster's label for the pages (its number before ``search build``); a
    template global, so the macros imported by every page can call it."""
    return state().cluster_names.get(int(c), str(c))


@bp.get("/")
def home():
    """Title search with suggestions, a user-id box, the rate-a-few-movies entry,
    something to browse (most rated and best rated movies, the clusters by name),
    and the model's figures."""
    st = state()
    return render_template("home.html", max_query=st.max_query, example_user=int(st.rec.user_ids[0]), **answers.browse())


@bp.get("/search")
def search():
    """Titles matching ``q``: the search box's answer when scripts are off."""
    st = state()
    answer = answers.search(request.args, required=False).as_dict()
    return render_template("search.html", max_query=st.max_query, search_max=st.search_max, **answer)


@bp.get("/users")
def user_lookup():
    """The user-id form's target: on to ``/users/<id>``."""
    user_id = params.parse_id(request.args.get("id", "").strip(), "user")
    return redirect(url_for("pages.user", user_id=user_id))


@bp.get("/users/<user_id>")
def user(user_id: str):
    """A user's top-k recommendations beside the movies they rated highest."""
    st = state()
    answer = answers.recommendations(user_id, request.args).as_dict()
    rated, n_rated = answers.user_ratings(answer["user_id"], st.user_ratings_shown)
    # Already-rated movies in the list are marked with the user's own rating.
    seen = dict(zip(*(a.tolist() for a in st.catalogue.user_ratings(answer["user_id"])))) if answer["include_seen"] else {}
    return render_template("user.html", **answer, rated=rated, n_rated=n_rated, k_max=st.k_max, seen=seen)


@bp.get("/for-me")
def newcomer():
    """Recommendations for someone not in the bundle, from a few titles they rate."""
    st = state()
    answer = answers.newcomer_from_titles(request.args).as_dict()
    low, high = st.rec.bundle.rating_scale
    return render_template("newcomer.html", **answer, rows=params.PAGE_RATINGS, low=low, high=high, max_query=st.max_query)


@bp.get("/movies/<movie_id>")
def movie(movie_id: str):
    """A movie's details and the movies most like it."""
    answer = answers.similar(movie_id, request.args).as_dict()
    return render_template("movie.html", movie=answers.movie(movie_id), **answer, k_max=state().k_max, few_ratings=FEW_RATINGS)


@bp.get("/clusters")
def clusters():
    """Every cluster with its size, top movies and genre mix, and the cluster map."""
    return render_template("clusters.html", **answers.clusters(), colour=colour)


@bp.get("/clusters/map.svg")
def cluster_map():
    """The movie map (2-D PCA) coloured by cluster, drawn once per app."""
    return Response(state().cluster_map(), mimetype="image/svg+xml", headers={"Cache-Control": "public, max-age=3600"})


@bp.get("/clusters/<c>")
def cluster(c: str):
    """All movies of one cluster, sortable by popularity, title or rating."""
    return render_template("cluster.html", **answers.cluster(c, request.args).as_dict(), sort_keys=params.SORT_KEYS)


@bp.get("/model")
def model():
    """The training curve and the manifest's figures."""
    answer = answers.model()
    settings = answer.pop("config")  # not to shadow Flask's `config` in templates
    used = answers.settings_used(settings)
    return render_template("model.html", **answer, settings=settings, used_settings=used, has_curve=state().has_training_curve)


@bp.get("/model/training_curve.png")
def training_curve():
    """The bundle's own training-curve picture (a fixed file name, never a path from the request)."""
    if not state().has_training_curve:
        raise NotFound("this bundle has no training curve")
    try:
        picture = state().training_curve()
    except BundleError as err:  # changed or removed since the server loaded the bundle: never serve it
        current_app.logger.warning("not serving the training curve: %s", err)
        raise NotFound("the training curve is not available (it changed after the bundle was loaded)") from None
    return send_file(io.BytesIO(picture), mimetype="image/png", max_age=3600)
