"""Error answers: JSON ``{"error": ..., "status": ...}`` under ``/api/``, a page elsewhere. Unknown ids and
unbuilt clusters are 404s; anything else is a bug, logged and answered with a 500 showing no internals.
"""

from __future__ import annotations

from flask import Flask, current_app, render_template, request
from flask.json.provider import DefaultJSONProvider
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError, NotFound
from werkzeug.exceptions import NotImplemented as Unsupported

from search import NotBuiltError, UnknownIdError


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, with a body nested too deeply for the parser a 400 instead of a 500."""

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise BadRequest("the JSON body is nested too deeply") from None


def check_framing() -> None:
    """Refuse what gunicorn's parser lets through: an HTTP/1.1 request without Host (400) and a transfer
    coding other than chunked (501). A chunked body is read whole here, so one over ``MAX_CONTENT_LENGTH``
    is a 413 rather than cut short, and a malformed one a 400 before any view runs."""
    environ = request.environ
    if environ.get("SERVER_PROTOCOL") == "HTTP/1.1" and not environ.get("HTTP_HOST"):
        raise BadRequest("a Host header is required (HTTP version 1.1)")
    codings = {coding.strip().lower() for coding in environ.get("HTTP_TRANSFER_ENCODING", "").split(",")}
    if codings - {"chunked", ""}:
        raise Unsupported(f"transfer coding {environ['HTTP_TRANSFER_ENCODING']!r}: only chunked is supported")
    if "chunked" in codings:
        request.get_data()
        request.stream.read(1)  # past the limit: RequestEntityTooLarge


def _http_error(err: HTTPException):
    if err.response is not None:  # flask-openapi3's answer to a refused request, already made
        return err.response
    code, message = err.code or 500, err.description or err.name
    headers = {"Allow": ", ".join(err.valid_methods)} if code == 405 and err.valid_methods else {}
    if request.path.startswith("/api/"):
        return {"error": message, "status": code}, code, headers
    return render_template("error.html", code=code, name=err.name, message=message), code, headers


def _unexpected(err: Exception):
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    return _http_error(InternalServerError("Something went wrong on our side; the error has been logged."))


def register(app: Flask) -> None:
    """Install the handlers on ``app``."""
    app.json = JSONProvider(app)
    app.register_error_handler(HTTPException, _http_error)
    for lookup in (UnknownIdError, NotBuiltError):  # unknown id, clusters before `search build`
        app.register_error_handler(lookup, lambda err: _http_error(NotFound(str(err))))
    app.register_error_handler(ParseException, lambda err: _http_error(BadRequest(f"malformed body: {err}")))
    app.register_error_handler(Exception, _unexpected)
    app.before_request(check_framing)
