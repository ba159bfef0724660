"""Flask UI and JSON API over a bundle: recommendations, "movies like this", clusters.

Settings, lowest precedence first: :data:`DEFAULTS`; :func:`create_app`'s ``config``; ``MOVIE_WEB_<KEY>``
environment variables, converted to the default's type; ``overrides``. Other keys go to Flask as they are.
Production: ``gunicorn -c python:web.gunicorn_conf "web:create_app()"``, or ``python -m web``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from typing import Any

from flask import Flask

from embedder import DEFAULT_BUNDLE

ENV_PREFIX = "MOVIE_WEB_"
API_DESCRIPTION = (
    "Recommendations, similar movies, title search and clusters over one exported bundle. Ids are the "
    "original MovieLens ids; items have the fields of `python -m search recommend --json`. Unknown query "
    'parameters get 400. Errors are JSON {"error": message, "status": code}.'
)

DEFAULTS: dict[str, Any] = {
    "BUNDLE": str(DEFAULT_BUNDLE),  # the bundle folder (or a link to one) to serve
    "K_DEFAULT": 10,  # answers when a request gives no k
    "K_MAX": 100,  # the most k may ask for
    "SEARCH_LIMIT_DEFAULT": 10,  # title search: answers by default
    "SEARCH_LIMIT_MAX": 50,  # title search: answers at most
    "MAX_QUERY_LENGTH": 200,  # the longest title query
    "USER_RATINGS_SHOWN": 20,  # the user's own highest-rated movies on the user page
    "MAP_MAX_POINTS": 4000,  # most movies on the cluster map (a fixed-seed sample beyond)
    "MAX_CONTENT_LENGTH": 1 << 20,  # largest request body, in bytes (chunked too): 413 above
    "RELOAD_SECONDS": 2.0,  # how often to check whether BUNDLE moved (web/reload.py); 0: never
}


def _settings(config: Mapping[str, Any], overrides: Mapping[str, Any], environ: Mapping[str, str]) -> dict:
    """The app's settings, in the module docstring's order; ValueError naming a bad one."""
    settings = {**DEFAULTS, **config}
    for key, default in DEFAULTS.items():
        if (raw := environ.get(ENV_PREFIX + key)) is None:
            continue
        try:
            settings[key] = type(default)(raw)
        except ValueError:
            kind = "an integer" if isinstance(default, int) else "a number"
            raise ValueError(f"{ENV_PREFIX}{key}={raw!r}: must be {kind}") from None
    settings.update(overrides)
    # Limits that would make every request fail stop the app at startup.
    for key, default in DEFAULTS.items():
        if isinstance(default, int) and not (isinstance(settings[key], int) and settings[key] >= 1):
            raise ValueError(f"{key} must be an integer of at least 1, got {settings[key]!r}")
    for low, high in (("K_DEFAULT", "K_MAX"), ("SEARCH_LIMIT_DEFAULT", "SEARCH_LIMIT_MAX")):
        if settings[low] > settings[high]:
            raise ValueError(f"{low} ({settings[low]}) is over {high} ({settings[high]})")
    reload = settings["RELOAD_SECONDS"]
    if isinstance(reload, bool) or not isinstance(reload, (int, float)) or not 0 <= reload < float("inf"):
        raise ValueError(f"RELOAD_SECONDS must be a number of seconds, 0 or more, got {reload!r}")
    return settings


def create_app(
    config: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Flask:
    """Build the app and load its bundle (never at import): settings as in the module's docstring,
    ``MOVIE_WEB_*`` read from ``environ`` (``os.environ`` by default). BundleError (naming the file)
    if the bundle is missing or damaged, ValueError naming a bad setting."""
    from flask_openapi3 import Info, OpenAPI
    from werkzeug.routing import IntegerConverter

    from search import Recommender
    from web import api, errors, models, pages
    from web.reload import BundleWatcher
    from web.state import WebState

    settings = _settings(config or {}, overrides or {}, os.environ if environ is None else environ)
    app = OpenAPI(
        __name__,
        info=Info(title="Movie embeddings API", version="1.0.0", description=API_DESCRIPTION),
        doc_prefix="/api",  # the document at /api/openapi.json, Swagger UI at /api/swagger
        security_schemes={},  # not null, which the OpenAPI schema refuses
        validation_error_status=400,
        validation_error_model=models.Error,
        validation_error_callback=api.validation_error,
    )
    app.config.update(settings)
    # "//api//v1" would otherwise redirect to a URL built from the request's Host header.
    app.url_map.merge_slashes = False
    # Ids in paths: anything but a whole number that fits int64 names nothing (404).
    app.url_map.converters["id"] = partial(IntegerConverter, max=models.INT64_MAX)

    recommender = Recommender.load(app.config["BUNDLE"], mmap=True)  # workers share the mapped arrays
    # Under gunicorn's preload_app this runs in the master: workers forked after it share
    # the similar-movies index and the catalogue instead of each building its own.
    recommender.warm()
    app.extensions["movie_web"] = WebState(recommender)
    limits = ("K_DEFAULT", "K_MAX", "SEARCH_LIMIT_DEFAULT", "SEARCH_LIMIT_MAX", "MAX_QUERY_LENGTH")
    requests = app.extensions["movie_web_requests"] = models.request_models(*(settings[k] for k in limits))
    watcher = app.extensions["movie_web_watcher"] = BundleWatcher(app, float(settings["RELOAD_SECONDS"]))
    app.before_request(lambda: watcher.before_request(app))

    errors.register(app)
    app.register_blueprint(pages.bp)
    app.register_api(api.blueprint(requests))
    return app
