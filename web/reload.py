"""Hot reload: a new folder behind ``BUNDLE`` (a link that ``train`` moves) is loaded, verified and swapped
in whole; each request keeps the state it began with; one that fails to load is refused (the old one
keeps serving, ``/api/v1/healthz`` reports it). The folder last accepted is written to a state file made
with the app (in gunicorn's master), so every worker, one forked later included, serves that one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from flask import Flask, g

from embedder.bundle import utc_now


class BundleWatcher:
    """Swaps the app's state when its bundle path moves, or when another worker accepted a bundle."""

    def __init__(self, app: Flask, every: float):
        self.path = str(app.config["BUNDLE"])
        self.every = every
        self.serving = os.path.realpath(self.path)  # the folder whose bundle is served
        self.last_refusal: dict[str, Any] | None = None  # {"bundle", "error", "at"}, until one is accepted
        self._refused: str | None = None
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        handle, self.state_file = tempfile.mkstemp(prefix="movie-web-", suffix=".served")
        os.close(handle)
        self._record(self.serving)
        weakref.finalize(self, _remove, self.state_file, os.getpid())

    def before_request(self, app: Flask) -> None:
        """Check (when due), then pin this request to the state being served."""
        if self.every > 0 and time.monotonic() - self._checked >= self.every:
            self._check(app)
        g.movie_web = app.extensions["movie_web"]

    def _record(self, folder: str) -> None:
        partial = Path(f"{self.state_file}.{os.getpid()}")
        partial.write_text(folder)
        partial.replace(self.state_file)

    def _check(self, app: Flask) -> None:
        if not self._lock.acquire(blocking=False):  # another thread is checking or loading
            return
        try:
            self._checked = time.monotonic()
            with contextlib.suppress(OSError):  # the bundle another worker accepted, first
                if (accepted := Path(self.state_file).read_text()) not in (self.serving, self._refused):
                    self._switch(app, accepted)
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
            app.logger.warning(
                "not serving %s, still serving %s: %s", target, self.serving, error, exc_info=not expected
            )
            return
        app.extensions["movie_web"] = WebState(recommender)
        self.serving, self._refused, self.last_refusal = target, None, None
        self._record(target)
        app.logger.info("now serving %s", target)


def _remove(path: str, owner: int) -> None:
    """Remove the state file, in the process that made it only (not in a worker that exits)."""
    if os.getpid() == owner:
        Path(path).unlink(missing_ok=True)
