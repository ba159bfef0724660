"""Hot reload: serve the bundle the configured path points at now, without a restart.

``BUNDLE`` is usually the link ``artifacts/current``, which ``train`` moves to each
bundle it publishes. Before a request, at most every ``RELOAD_SECONDS``, the app
resolves that path; when it names another folder, the bundle there is loaded and
verified, then swapped in whole, so a request sees one bundle from start to end
(each request is pinned to the state it began with). A bundle whose loading fails is
refused: the old one keeps serving, and ``/api/v1/healthz`` reports the refusal until
a good bundle takes its place. ``RELOAD_SECONDS`` 0 turns checking off.

One bundle at a time: the folder last accepted is written to a small state file that
the app made when it was created (under gunicorn's ``preload_app``, in the master, so
every worker shares it). A worker that finds another folder recorded there, such as
one forked after a crash from a master that still holds the first bundle, switches to
it, so no two workers answer from different bundles for longer than one check.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import weakref
from typing import Any

from flask import Flask, g

from embedder.bundle import utc_now


class BundleWatcher:
    """Notices that the configured bundle path moved, or that another worker accepted a
    bundle, and swaps the app's state."""

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
        partial = f"{self.state_file}.{os.getpid()}"
        with open(partial, "w") as handle:
            handle.write(folder)
        os.replace(partial, self.state_file)

    def _accepted(self) -> str:
        try:
            with open(self.state_file) as handle:
                return handle.read()
        except FileNotFoundError:
            return self.serving

    def _check(self, app: Flask) -> None:
        if not self._lock.acquire(blocking=False):  # another thread is checking or loading
            return
        try:
            self._checked = time.monotonic()
            accepted = self._accepted()
            if accepted not in (self.serving, self._refused):
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
        app.extensions["movie_web"] = WebState(recommender, app.config)
        self.serving, self._refused, self.last_refusal = target, None, None
        self._record(target)
        app.logger.info("now serving %s", target)


def _remove(path: str, owner: int) -> None:
    """Remove the state file, in the process that made it only (not in a worker that exits)."""
    if os.getpid() == owner:
        with contextlib.suppress(OSError):
            os.unlink(path)
