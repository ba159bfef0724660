"""web.jsonio: answers written by orjson read back as the standard library's would."""

from __future__ import annotations

import json

import numpy as np
from flask import Flask

from web.jsonio import OrjsonProvider


def _app() -> Flask:
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    return app


def test_an_answer_reads_back_as_the_standard_librarys_json():
    answer = {"title": "Amélie (2001)", "score": 4.123456789, "ids": [1, -1], "none": None, "ok": True, 3: "cluster three"}
    with _app().app_context() as ctx:
        body = ctx.app.json.response(answer).get_data()
    assert json.loads(body) == json.loads(json.dumps(answer))  # the int key is written as "3", as json does
    assert list(json.loads(body)) == ["title", "score", "ids", "none", "ok", "3"]  # field order kept


def test_numpy_values_are_numbers_and_what_orjson_refuses_falls_back():
    with _app().app_context() as ctx:
        assert json.loads(ctx.app.json.response({"n": np.int64(7), "x": np.float32(0.5)}).get_data()) == {"n": 7, "x": 0.5}
        huge = 2**70  # beyond orjson's 64-bit integers
        response = ctx.app.json.response({"id": huge})
    assert response.mimetype == "application/json" and json.loads(response.get_data()) == {"id": huge}
