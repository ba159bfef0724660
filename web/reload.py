"""Hot reload: serve the bundle the configured path points at now, without a restart.

``BUNDLE`` is usually the link ``artifacts/current``, which ``train`` moves to
each bundle it publishes. Before a request, at most every ``RELOAD_SECONDS``, the
app resolves that path; when it names another folder, the bundle there is loaded
and verified (checksums, dtypes, shapes) and then swapped in as a whole, so a
request sees one bundle from start to end. A bundle that fails verification is
refused, as is one whose loading fails in any other way: the old one keeps
serving, the refusal is logged once and reported by ``/api/v1/healthz`` until a
good bundle takes its place.

Each gunicorn worker checks for itself; the request that notices a new bundle
waits while it loads, and no request fails. ``RELOAD_SECONDS`` 0 turns checking off.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from flask import Flask, g

from embedder.bundle import utc_now


class BundleWatcher:
    """Notices that the configured bundle path moved and swaps the app's state."""

    def __init__(self, app: Flask, every: float):
        self.path = str(app.config["BUNDLE"])
        self.every = every
        self.serving = os.path.realpath(self.path)
        """The folder whose bundle is being served."""
        self.last_refusal: dict[str, Any] | None = None
        """``{"bundle", "error", "at"}`` of the last bundle refused, until one is accepted."""
        self._refused: str | None = None
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def before_request(self, app: Flask) -> None:
        """Check (when due), then pin this request to the state being served."""
        if self.every > 0 and time.monotonic() - self._checked >= self.every:
            self._check(app)
        g.movie_web = app.extensions["movie_web"]

    def _check(self, app: Flask) -> None:
        if not self._lock.acquire(blocking=False):  # another thread is checking or loading
            return
        try:
            self._checked = time.monotonic()
            target = os.path.realpath(self.path)
            if target not in (self.serving, self._refused):
                self._switch(app, target)
        finally:
            self._lock.release()

    def _switch(self, app: Flask, target: str) -> None:
        from search import BundleError, Recommender

        from web.state import WebState

        try:
            recommender = Recommender.load(target, mmap=True)
            recommender.warm()  # while this request waits anyway, not on the first similar or title search
        except Exception as err:  # noqa: BLE001 - whatever the new bundle does, the old one keeps serving
            expected = isinstance(err, (BundleError, OSError))
            error = str(err) if expected else f"{type(err).__name__}: {err}"
            self._refused = target
            self.last_refusal = {"bundle": target, "error": error, "at": utc_now()}
            # A bundle that fails verification is one line; anything else is a bug worth its traceback.
            app.logger.warning("not serving %s, still serving %s: %s", target, self.serving, error, exc_info=not expected)
            return
        app.extensions["movie_web"] = WebState(recommender, app.config)
        self.serving, self._refused, self.last_refusal = target, None, None
        app.logger.info("now serving %s", target)
