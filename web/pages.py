"""Server-rendered HTML pages (Jinja autoescaping on). Unknown query parameters are ignored (browsers
and link trackers add their own); a refused value comes back (status 400) with what was typed and the
message beside the field, answered with the parameter's default meanwhile.
"""

from __future__ import annotations

import contextlib
import io

from flask import Blueprint, Response, current_app, redirect, render_template, request, send_file, url_for
from pydantic import ValidationError
from werkzeug.exceptions import NotFound

from embedder.config import one_method_settings
from search import BundleError, UnknownIdError
from search.catalogue import MEMBER_SORTS, AmbiguousTitle
from web.state import colour, state

bp = Blueprint("pages", __name__)

PAGE_RATINGS = 5  # rating rows the newcomer page offers, and the most it takes
PAGE_CHOICES = 8  # candidates offered for a title that names several movies
# Behind autoescaping, no inline or foreign script runs; but Swagger UI's page starts itself inline.
CSP = (
    "default-src 'self'; script-src 'self'{}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@bp.after_app_request
def _security_headers(response: Response) -> Response:
    """nosniff and a same-origin referrer policy on every answer; CSP on HTML answers."""
    response.headers.update({"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"})
    if response.content_type.startswith("text/html"):
        inline = " 'unsafe-inline'" if request.path.startswith("/api/") else ""
        response.headers["Content-Security-Policy"] = CSP.format(inline)
    return response


@bp.app_context_processor
def _common() -> dict:
    """Values every template may use (the footer shows the bundle's figures)."""
    return {"summary": state().summary}


@bp.app_template_global()
def cluster_name(c: int) -> str:
    """A cluster's label for the pages (its number before ``search build``)."""
    catalogue = state().catalogue
    return str(catalogue.clusters()[int(c)]["label"]) if catalogue.built else str(c)


def page_query(name: str):
    """The page's query checked by the app's model ``name`` (other parameters ignored), and
    ``{parameter: message}`` of the values refused, which take their defaults instead."""
    model = current_app.extensions["movie_web_requests"][name]
    values = {key: value for key, value in request.args.items() if key in model.model_fields}
    errors: dict[str, str] = {}
    while True:  # every field of a page's model has a default, so this ends
        try:
            return model.model_validate(values), errors
        except ValidationError as err:
            for error in err.errors(include_url=False):
                errors[error["loc"][0]] = f"{error['loc'][0]}: {error['msg']}"
                values.pop(error["loc"][0], None)


def render(template: str, errors: dict | None = None, **values):
    """The page, with status 400 when some of its input was refused."""
    return render_template(template, errors=errors or {}, **values), 400 if errors else 200


@bp.get("/")
def home(user_error: str | None = None):
    """Title search with suggestions, a user-id box, the newcomer entry, lists to browse, figures."""
    errors = {"id": user_error} if user_error else {}
    return render("home.html", errors, example_user=int(state().rec.user_ids[0]), **state().browse)


@bp.get("/search")
def search():
    """Titles matching ``q``: the search box's answer when scripts are off."""
    query, errors = page_query("search_page")
    return render("search.html", errors, **state().search(query))


@bp.get("/users")
def user_lookup():
    """The user-id form's target: on to ``/users/<id>``, or the home page again with the message."""
    raw = request.args.get("id", "").strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) < 19):
        return home(f"a user id is a whole number, got {raw!r}" if raw else "type a user id")
    if int(raw) not in state().rec.bundle.user_vocab:
        return home(f"unknown user {int(raw)}")
    return redirect(url_for("pages.user", user_id=int(raw)))


@bp.get("/users/<id:user_id>")
def user(user_id: int):
    """A user's top-k recommendations beside the movies they rated highest."""
    query, errors = page_query("recommendations")
    ids, ratings = state().catalogue.user_ratings(user_id)
    shown = current_app.config["USER_RATINGS_SHOWN"]
    rated = state().catalogue.items(ids[:shown], ratings[:shown])
    seen = dict(zip(ids.tolist(), ratings.tolist())) if query.include_seen else {}  # marked in the list
    answer = state().recommendations(user_id, query)
    return render("user.html", errors, **answer, rated=rated, n_rated=len(ids), seen=seen)


@bp.get("/for-me")
def newcomer():
    """Recommendations for a newcomer from a few titles they rate. A title is taken when it clearly names
    one movie (:meth:`search.catalogue.Catalogue.resolve`); otherwise the row offers the candidates."""
    catalogue, (low, high) = state().catalogue, state().rec.bundle.rating_scale
    query, errors = page_query("newcomer_page")
    typed = request.args.getlist("rating") + [""] * PAGE_RATINGS
    rows, chosen = [], {}
    for n, title in enumerate(request.args.getlist("title")[:PAGE_RATINGS]):
        rows.append(row := {"query": title.strip(), "typed": typed[n].strip()})
        if not row["query"]:
            continue
        with contextlib.suppress(ValueError):
            row["rating"] = float(row["typed"])
        try:
            movie_id = catalogue.resolve(row["query"][: current_app.config["MAX_QUERY_LENGTH"]])
        except AmbiguousTitle as err:
            errors[f"row{n}"] = f"{len(err.candidates)} movies match {row['query']!r}: which one?"
            row["choices"] = _choices(n, err.candidates[:PAGE_CHOICES])
        except UnknownIdError:
            errors[f"row{n}"] = f"No title matches {row['query']}."
        else:
            row.update(catalogue.movie(movie_id))
        if not low <= row.get("rating", float("nan")) <= high:
            errors[f"row{n}"] = (
                f"rating {n + 1} must be a number from {low:g} to {high:g}, got {row['typed']!r}"
            )
        elif "movie_id" in row:
            chosen[row["movie_id"]] = row["rating"]
            row["taken"] = True
    rows += [{}] * (PAGE_RATINGS - len(rows))
    answer = state().newcomer(list(chosen.items()), query.k, query.order)
    return render("newcomer.html", errors, **answer, rows=rows, low=low, high=high)


def _choices(n: int, candidates: list[int]) -> list[dict]:
    """The candidates for title ``n`` of the newcomer form, each with a link to the same form with that
    title in its place (its id where two candidates share a title)."""
    movies = [state().catalogue.movie(m) for m in candidates]
    titles = [m["title"] for m in movies]
    args = request.args.to_dict(flat=False)
    for movie in movies:
        picked = movie["title"] if titles.count(movie["title"]) == 1 else str(movie["movie_id"])
        args["title"][n] = picked
        movie["href"] = url_for("pages.newcomer", **args)
    return movies


@bp.get("/movies/<id:movie_id>")
def movie(movie_id: int):
    """A movie's details and the movies most like it."""
    query, errors = page_query("similar")
    answer = state().similar(movie_id, query)
    return render("movie.html", errors, movie=state().catalogue.movie(movie_id), **answer)


@bp.get("/clusters")
def clusters():
    """Every cluster with its size, top movies and genre mix, and the cluster map."""
    return render("clusters.html", **state().clusters(), colour=colour)


@bp.get("/clusters/map.svg")
def cluster_map():
    """The movie map (2-D PCA) coloured by cluster, drawn once per bundle."""
    return Response(state().cluster_map, mimetype="image/svg+xml", headers={"Cache-Control": "max-age=3600"})


@bp.get("/clusters/<id:c>")
def cluster(c: int):
    """All movies of one cluster, sortable by popularity, title or rating."""
    query, errors = page_query("cluster")
    return render("cluster.html", errors, **state().cluster(c, query.sort), sort_keys=MEMBER_SORTS)


@bp.get("/model")
def model():
    """The training curve and the manifest's figures."""
    answer = state().model()
    settings = answer.pop("config")  # not to shadow Flask's `config` in templates
    method, owners = settings.get("method"), one_method_settings()  # leave out the other method's
    used = {name for name in settings if owners.get(name, method) == method}
    curve = state().rec.bundle.has("training_curve.png")
    return render("model.html", **answer, settings=settings, used_settings=used, has_curve=curve)


@bp.get("/model/training_curve.png")
def training_curve():
    """The bundle's own training-curve picture (a fixed file name, never a path from the request)."""
    try:  # checked against the bundle's checksum: never serve a file changed since loading
        picture = state().rec.bundle.read_bytes("training_curve.png")
    except BundleError as err:
        current_app.logger.warning("not serving the training curve: %s", err)
        raise NotFound(
            "this bundle has no training curve, or it changed after the bundle was loaded"
        ) from None
    return send_file(io.BytesIO(picture), mimetype="image/png", max_age=3600)
