"""Error answers: JSON ``{"error": ..., "status": ...}`` under ``/api/``, a
friendly HTML page elsewhere.

* HTTP errors raised by the views and parsers (400, 404, 405, ...) keep their code.
* An unknown user, movie or cluster (``UnknownIdError``, the ``KeyError``
  subclass that ``search`` raises) is a 404 wherever it surfaces, and so are
  the cluster routes of a bundle that ``python -m search build`` has not
  built yet (``search.NotBuiltError``, whose message says how to build).
* Anything else is a bug: it is logged with its traceback and answered with a
  plain 500 that shows no internals. The bad-input tests walk every route to
  check that no bad value gets here.
"""

from __future__ import annotations

from flask import Flask, current_app, render_template, request
from markupsafe import escape
from werkzeug.exceptions import HTTPException, InternalServerError, NotFound

from embedder.vocab import UnknownIdError
from search import NotBuiltError


def error_response(code: int, name: str, message: str):
    """The error answer in the form the request's area uses."""
    if request.path.startswith("/api/"):
        return {"error": message, "status": code}, code
    try:
        return render_template("error.html", code=code, name=name, message=message), code
    except Exception:  # the page itself failed: still answer something readable
        current_app.logger.exception("error page failed to render")
        return f"<!doctype html><title>{code}</title><h1>{escape(name)}</h1><p>{escape(message)}</p>", code


def _http_error(err: HTTPException):
    response = error_response(err.code or 500, err.name, err.description or err.name)
    if err.code == 405 and err.valid_methods:  # keep the Allow header werkzeug computed
        body, code = response
        return body, code, {"Allow": ", ".join(err.valid_methods)}
    return response


def _not_found(err: Exception):
    return _http_error(NotFound(str(err)))


def _unexpected(err: Exception):
    if isinstance(err, HTTPException):  # e.g. a routing redirect
        return err
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    return _http_error(InternalServerError("Something went wrong on our side; the error has been logged."))


def register(app: Flask) -> None:
    """Install the handlers on ``app``."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(UnknownIdError, _not_found)  # unknown user, movie or cluster
    app.register_error_handler(NotBuiltError, _not_found)  # clusters before `search build`
    app.register_error_handler(Exception, _unexpected)
