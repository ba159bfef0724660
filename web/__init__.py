"""Flask UI and JSON API over a bundle: recommendations, "movies like this", clusters.

The web layer is thin: every answer comes from :class:`search.Recommender` and its
:class:`search.Catalogue`, loaded once inside :func:`create_app` (never at import),
and this package never imports torch. Turning them into JSON rows and pages is
this package's job (``web/answers.py``, ``web/state.py``, the templates).

Configuration, from lowest to highest precedence:

1. :data:`DEFAULTS` below;
2. the ``config`` mapping given to :func:`create_app`;
3. environment variables ``MOVIE_WEB_<KEY>`` (e.g. ``MOVIE_WEB_BUNDLE``,
   ``MOVIE_WEB_K_MAX``), converted to the type of the default; a value that does
   not convert stops the app with an error naming the variable;
4. the ``overrides`` mapping given to :func:`create_app` (tests use it, so a
   variable in someone's shell cannot point a test at another bundle).

Only the keys of :data:`DEFAULTS` are read from the environment; any other key
in a mapping is passed to Flask's config as it is (e.g. ``TESTING``).

Production::

    gunicorn -c python:web.gunicorn_conf "web:create_app()"

or ``python -m web`` (the same server and defaults; ``--dev`` for Flask's
development server). Both bind 127.0.0.1:8000 by default, with debug off.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from flask import Flask

from embedder import DEFAULT_BUNDLE

ENV_PREFIX = "MOVIE_WEB_"

DEFAULTS: dict[str, Any] = {
    # The bundle folder (or a link to one) to serve.
    "BUNDLE": str(DEFAULT_BUNDLE),
    # Number of answers when a request gives no k, and the most it may ask for.
    "K_DEFAULT": 10,
    "K_MAX": 100,
    # Title search: answers by default / at most, and the longest query accepted.
    "SEARCH_LIMIT_DEFAULT": 10,
    "SEARCH_LIMIT_MAX": 50,
    "MAX_QUERY_LENGTH": 200,
    # How many of the user's own highest-rated movies the user page shows.
    "USER_RATINGS_SHOWN": 20,
    # Most points drawn on the cluster map (a fixed-seed sample beyond that).
    "MAP_MAX_POINTS": 4000,
    # How often (seconds) to check whether BUNDLE now points at another bundle and
    # switch to it (web/reload.py); 0 never checks.
    "RELOAD_SECONDS": 2.0,
}


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The DEFAULTS keys set in the environment, converted to the defaults' types."""
    found: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
        name = ENV_PREFIX + key
        if name not in environ:
            continue
        raw = environ[name]
        if isinstance(default, (int, float)):
            kind = type(default)
            try:
                found[key] = kind(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r}: must be {'an integer' if kind is int else 'a number'}") from None
        else:
            found[key] = raw
    return found


def _check_config(config: Mapping[str, Any]) -> None:
    """Stop at startup on limits that would make every request fail."""
    for key in ("K_DEFAULT", "K_MAX", "SEARCH_LIMIT_DEFAULT", "SEARCH_LIMIT_MAX", "MAX_QUERY_LENGTH", "USER_RATINGS_SHOWN", "MAP_MAX_POINTS"):
        if int(config[key]) < 1:
            raise ValueError(f"{key} must be at least 1, got {config[key]}")
    if config["K_DEFAULT"] > config["K_MAX"]:
        raise ValueError(f"K_DEFAULT ({config['K_DEFAULT']}) is over K_MAX ({config['K_MAX']})")
    if config["SEARCH_LIMIT_DEFAULT"] > config["SEARCH_LIMIT_MAX"]:
        raise ValueError("SEARCH_LIMIT_DEFAULT is over SEARCH_LIMIT_MAX")
    reload = config["RELOAD_SECONDS"]
    if isinstance(reload, bool) or not isinstance(reload, (int, float)) or not 0 <= reload < float("inf"):
        raise ValueError(f"RELOAD_SECONDS must be a number of seconds, 0 or more, got {reload!r}")


def create_app(
    config: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Flask:
    """Build the app and load its bundle once.

    Parameters
    ----------
    config:
        Settings over :data:`DEFAULTS` (lowest but one precedence).
    overrides:
        Settings over everything, the environment included (for tests).
    environ:
        Where to read ``MOVIE_WEB_*`` from; ``os.environ`` by default.

    Raises
    ------
    embedder.bundle.BundleError
        If the bundle is missing or damaged; the message names the file.
    """
    from search import Recommender

    from web import api, errors, pages
    from web.jsonio import OrjsonProvider
    from web.reload import BundleWatcher
    from web.state import WebState

    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    settings: dict[str, Any] = dict(DEFAULTS)
    settings.update(config or {})
    settings.update(_from_environment(os.environ if environ is None else environ))
    settings.update(overrides or {})
    _check_config(settings)
    app.config.update(settings)
    # "//api//v1" would otherwise redirect to a URL built from the request's Host header.
    app.url_map.merge_slashes = False

    recommender = Recommender.load(app.config["BUNDLE"], mmap=True)  # workers share the mapped arrays
    # Under gunicorn's preload_app this runs in the master: workers forked after it
    # share the similar-movies index and the catalogue (movie rows, title index)
    # instead of each building its own on first use.
    recommender.warm()
    app.extensions["movie_web"] = WebState(recommender, app.config)
    watcher = BundleWatcher(app, float(app.config["RELOAD_SECONDS"]))
    app.extensions["movie_web_watcher"] = watcher
    app.before_request(lambda: watcher.before_request(app))

    errors.register(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.add_url_rule("/api/openapi.json", "openapi", api.openapi_document)
    return app
