"""The app's JSON answers: Flask's JSON provider with orjson writing the responses.

Every API answer is written through it (``jsonify`` and returned dicts). orjson
writes the same JSON as the standard library for what the answers hold (strings,
numbers, lists, objects in field order), several times faster, which matters on a
request path of a few hundred microseconds (benchmarks/README.md, "Web load").
Anything orjson refuses (an integer beyond 64 bits) is written by the standard
library as before; ``dumps`` (templates, the test client) and reading stay the
standard library's.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

# Keys that are not strings (a cluster number) are written as strings, as the
# standard library does; numpy scalars and arrays are written as numbers.
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class OrjsonProvider(DefaultJSONProvider):
    """:class:`flask.json.provider.DefaultJSONProvider` whose responses orjson writes."""

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """A JSON response of the value(s) given, as :func:`flask.jsonify` makes."""
        obj = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(obj, default=self.default, option=_OPTIONS)
        except orjson.JSONEncodeError:
            return super().response(obj)
        return self._app.response_class(body, mimetype=self.mimetype)
