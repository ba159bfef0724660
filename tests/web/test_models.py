"""The request and answer models (web/models.py): the OpenAPI document states exactly the
limits that the API enforces, and the answers have exactly their models' fields."""

from __future__ import annotations

import pytest

from tests.web.test_api import get_json, post_json, some_movie
from tests.web.test_bad_input import good_path_values, urls_with
from web import models


def _probes(schema: dict):
    """(value, accepted) pairs at and just past each limit the schema states."""
    if schema["type"] == "integer":
        low, high = schema["minimum"], schema["maximum"]
        yield from (
            (str(low), True),
            (str(high), True),
            (str(low - 1), False),
            (str(high + 1), False),
            ("x", False),
        )
    elif schema["type"] == "boolean":
        yield from (("true", True), ("false", True), ("maybe", False))
    elif "enum" in schema:
        yield from ((value, True) for value in schema["enum"])
        yield "other", False
    else:
        yield from (
            ("x" * schema["maxLength"], True),
            ("x" * (schema["maxLength"] + 1), False),
            ("a\x00b", False),
        )


def test_the_document_states_exactly_the_limits_the_api_enforces(client, rec):
    spec = client.get("/api/openapi.json").get_json()
    good = good_path_values(rec)
    probed = 0
    for path, operations in spec["paths"].items():
        if "get" not in operations:
            continue
        url = urls_with(path, good)
        query = [p for p in operations["get"].get("parameters", []) if p["in"] == "query"]
        required = {p["name"]: "x" for p in query if p.get("required")}
        for parameter in query:
            name, schema = parameter["name"], parameter["schema"]
            for value, accepted in _probes(schema):
                response = client.get(url, query_string={**required, name: value})
                assert response.status_code == (200 if accepted else 400), (
                    path,
                    name,
                    value,
                    response.get_json(),
                )
                if not accepted:
                    assert response.get_json()["error"].startswith(f"{name}: "), (path, name, value)
                probed += 1
            if parameter.get("required"):
                assert client.get(url).status_code == 400
            else:  # the answer echoes the value used: the default
                assert get_json(client, urls_with(url, {}, required))[name] == schema["default"]
    assert probed > 30


def test_the_documents_limits_are_the_apps_settings(app, client, rec):
    spec = client.get("/api/openapi.json").get_json()
    query = {
        (path.removeprefix("/api/v1"), p["name"]): p["schema"]
        for path, operations in spec["paths"].items()
        for op in operations.values()
        for p in op.get("parameters", [])
    }
    config = app.config
    for path in ("/users/{user_id}/recommendations", "/movies/{movie_id}/similar"):
        assert (query[path, "k"]["maximum"], query[path, "k"]["default"]) == (
            config["K_MAX"],
            config["K_DEFAULT"],
        )
        assert query[path, "min_ratings"]["maximum"] == models.MAX_MIN_RATINGS
    limit = query["/movies", "limit"]
    assert (limit["maximum"], limit["default"]) == (
        config["SEARCH_LIMIT_MAX"],
        config["SEARCH_LIMIT_DEFAULT"],
    )
    assert query["/movies", "q"]["maxLength"] == config["MAX_QUERY_LENGTH"]
    body = spec["components"]["schemas"]["NewcomerBody"]
    assert (body["properties"]["k"]["maximum"], body["properties"]["k"]["default"]) == (
        config["K_MAX"],
        config["K_DEFAULT"],
    )
    assert (
        body["properties"]["ratings"]["maxItems"] == models.MAX_BODY_RATINGS
        and body["additionalProperties"] is False
    )
    movie = int(rec.movie_ids[0])
    post_json(client, {"ratings": [], "k": config["K_MAX"]})
    assert post_json(client, {"ratings": [], "k": config["K_MAX"] + 1}, 400)["error"].startswith("k: ")
    too_many = {"ratings": [{"movie_id": movie, "rating": 3}] * (models.MAX_BODY_RATINGS + 1)}
    assert post_json(client, too_many, 400)["error"].startswith("ratings: ")


def test_answers_have_exactly_the_fields_of_their_models(client, rec):
    spec = client.get("/api/openapi.json").get_json()
    good = good_path_values(rec)
    checked = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            model = getattr(models, ref.rsplit("/", 1)[-1])
            if method == "post":
                answer = post_json(client, {"ratings": [{"movie_id": some_movie(rec), "rating": 4}], "k": 3})
            else:
                answer = get_json(
                    client, urls_with(path, good) + ("?q=movie" if path == "/api/v1/movies" else "")
                )
            assert set(answer) == set(model.model_fields), path
            model.model_validate(answer)  # and their types
            item_model = models.Recommended if "recommendations" in path else models.Item
            for item in answer.get("items", []):
                assert set(item) == set(item_model.model_fields), path
            checked += 1
    assert checked == 9


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_a_body_are_400(client, rec, number):
    movie = int(rec.movie_ids[0])
    body = f'{{"ratings": [{{"movie_id": {movie}, "rating": {number}}}]}}'
    response = client.post("/api/v1/recommendations", data=body, content_type="application/json")
    assert response.status_code == 400 and "must be a number from" in response.get_json()["error"]
