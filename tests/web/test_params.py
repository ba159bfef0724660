"""The request models (web/params.py): every rule refuses what it refused before the
rules were pydantic models, with the same message; the OpenAPI document states exactly
the limits that the API enforces; the answers have exactly their models' fields."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import NotFound

from tests.web.test_api import get_json, post_json, some_movie
from tests.web.test_bad_input import good_path_values, urls_with
from web import api, openapi, params

REQUESTS = params.Requests(k_default=10, k_max=100, search_default=10, search_max=50, max_query=200, n_movies=1000)


def refusal(model, values) -> str:
    """The 400 message of ``values`` under ``model``."""
    with pytest.raises(params.ParamError) as err:
        params.parse(model, values)
    return err.value.description


@given(st.text(max_size=40))
def test_parse_id_gives_an_int64_or_404(raw):
    try:
        value = params.parse_id(raw, "movie")
    except NotFound:
        return
    assert -(2**63) < value < 2**63 and raw.strip("+-").isascii() and raw.lstrip("+-").isdigit()


@given(st.one_of(st.text(max_size=40), st.integers().map(str)))
def test_k_is_an_int_in_range_or_a_400(raw):
    try:
        value = params.parse(REQUESTS.recommendations, {"k": raw}).k
    except params.ParamError as err:
        assert err.description.startswith("k must be an integer from 1 to 100, got ")
        return
    assert 1 <= value <= 100 and value == int(raw)


@pytest.mark.parametrize(
    "model, values, message",
    [
        ("recommendations", {"k": "0"}, "k must be an integer from 1 to 100, got 0"),
        ("recommendations", {"k": "101"}, "k must be an integer from 1 to 100, got 101"),
        ("recommendations", {"k": "1.0"}, "k must be an integer from 1 to 100, got '1.0'"),  # pydantic's int takes it
        ("recommendations", {"k": "1_0"}, "k must be an integer from 1 to 100, got '1_0'"),  # and this
        ("recommendations", {"k": "٣"}, "k must be an integer from 1 to 100, got '٣'"),  # and a non-ASCII digit
        ("recommendations", {"k": "1e3"}, "k must be an integer from 1 to 100, got '1e3'"),
        ("recommendations", {"k": ""}, "k must be an integer from 1 to 100, got ''"),
        ("recommendations", {"k": str(10**30)}, f"k must be an integer from 1 to 100, got {10**30}"),
        ("recommendations", {"k": "9" * 5000}, "k must be an integer from 1 to 100, got " + "9" * 40 + "..."),
        ("recommendations", {"k": "{k}"}, "k must be an integer from 1 to 100, got '{k}'"),
        ("recommendations", {"include_seen": "yes"}, "include_seen must be true, false, 1 or 0, got 'yes'"),
        ("recommendations", {"include_seen": ""}, "include_seen must be true, false, 1 or 0, got ''"),
        ("recommendations", {"k": "5", "min_ratings": "-1"}, "min_ratings must be an integer from 0 to 1000000, got -1"),
        ("recommendations", {"k": "x", "include_seen": "x"}, "k must be an integer from 1 to 100, got 'x'"),  # the first, in order
        ("similar", {"min_ratings": "1000001"}, "min_ratings must be an integer from 0 to 1000000, got 1000001"),
        ("search", {}, "q is required: the text to look for in movie titles"),
        ("search", {"q": "a" * 201}, "q must be at most 200 characters, got 201"),
        ("search", {"q": "star\nwars"}, "q must not contain control characters"),
        ("search", {"q": "x", "limit": "51"}, "limit must be an integer from 1 to 50, got 51"),
        ("search", {"q": "x", "offset": "1001"}, "offset must be an integer from 0 to 1000, got 1001"),
        ("search_page", {"q": "\x00"}, "q must not contain control characters"),
        ("cluster", {"sort": "POPULARITY"}, "sort must be one of popularity, title, rating, got 'POPULARITY'"),
        ("newcomer_page", {"title": ["x"] * 6}, "title must be given at most 5 times, got 6"),
        ("newcomer_page", {"k": "0"}, "k must be an integer from 1 to 100, got 0"),
        ("newcomer_body", None, 'the body must be a JSON object such as {"ratings": [{"movie_id": 1, "rating": 5}], "k": 10}'),
        ("newcomer_body", {"k": 0, "zz": 1, "aa": 2}, "unknown field(s) 'aa', 'zz'; the body takes ratings and k"),
        ("newcomer_body", {"k": 3}, 'ratings must be a list of at most 1000 objects {"movie_id": int, "rating": number}'),
        ("newcomer_body", {"ratings": [{"movie_id": "x", "extra": 1}]}, 'ratings[0] must be an object with exactly "movie_id" and "rating"'),
        ("newcomer_body", {"ratings": [{"movie_id": 1.0, "rating": 4}]}, "ratings[0].movie_id must be an integer, got 1.0"),
        ("newcomer_body", {"ratings": [{"movie_id": -(2**63), "rating": 4}]}, f"ratings[0].movie_id must be an integer, got {-(2**63)}"),
        ("newcomer_body", {"ratings": [{"movie_id": 1, "rating": 4}, {"movie_id": 2, "rating": False}]}, "ratings[1].rating must be a number, got False"),
        ("newcomer_body", {"ratings": [], "k": True}, "k must be an integer from 1 to 100, got True"),  # pydantic's int takes it
        ("newcomer_body", {"ratings": [], "k": 5.0}, "k must be an integer from 1 to 100, got 5.0"),
        ("newcomer_body", {"ratings": [], "k": "5"}, "k must be an integer from 1 to 100, got '5'"),
    ],
)
def test_each_rule_refuses_what_it_refused(model, values, message):
    assert refusal(getattr(REQUESTS, model), values) == message


def test_accepted_values_and_defaults():
    parse = params.parse
    query = parse(REQUESTS.recommendations, {"k": " 007 ", "include_seen": "TRUE", "min_ratings": "+5"})
    assert (query.k, query.include_seen, query.min_ratings) == (7, True, 5)
    query = parse(REQUESTS.recommendations, {"typo": "1"})  # ignored here; the API refuses it first (reject_unknown)
    assert (query.k, query.include_seen, query.min_ratings) == (10, False, 0)
    assert [parse(REQUESTS.recommendations, {"include_seen": v}).include_seen for v in ("true", "1", "False", " 0 ")] == [True, True, False, False]
    assert parse(REQUESTS.recommendations, MultiDict([("k", "1"), ("k", "abc")])).k == 1  # the first of a repeated parameter
    assert parse(REQUESTS.search, {"q": "  Toy "}).q == "Toy" and parse(REQUESTS.search_page, {}).q == ""
    assert parse(REQUESTS.cluster, {}).sort == "popularity" and params.SORT_KEYS == ("popularity", "title", "rating")
    body = parse(REQUESTS.newcomer_body, {"ratings": [{"movie_id": 1, "rating": 4}, {"movie_id": 2, "rating": 3.5}]})
    assert [(r.movie_id, r.rating) for r in body.ratings] == [(1, 4.0), (2, 3.5)] and body.k == 10
    # NaN passes here: the recommender refuses it with the rating scale (test_nan_and_infinity_in_a_body_are_400)
    assert math.isnan(parse(REQUESTS.newcomer_body, {"ratings": [{"movie_id": 1, "rating": math.nan}]}).ratings[0].rating)


def test_unknown_query_parameters_are_named():
    with pytest.raises(params.ParamError, match="unknown query parameter\\(s\\) 'typo'; this route takes k, include_seen, min_ratings"):
        params.reject_unknown({"k": "1", "typo": "2"}, REQUESTS.recommendations)
    params.reject_unknown({"k": "1"}, REQUESTS.recommendations)
    with pytest.raises(params.ParamError, match="'a', 'b'; this route takes no query parameters"):
        params.reject_unknown({"b": "", "a": ""}, REQUESTS.healthz)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_a_body_are_400(client, rec, number):
    movie = int(rec.movie_ids[0])
    response = client.post("/api/v1/recommendations", data=f'{{"ratings": [{{"movie_id": {movie}, "rating": {number}}}]}}', content_type="application/json")
    assert response.status_code == 400 and "must be a number from" in response.get_json()["error"]


def _probes(schema: dict):
    """(value, accepted) pairs at and just past each limit the schema states."""
    if schema["type"] == "integer":
        low, high = schema["minimum"], schema["maximum"]
        yield from ((str(low), True), (str(high), True), (str(low - 1), False), (str(high + 1), False), (f"{low}.0", False))
    elif schema["type"] == "boolean":
        yield from (("true", True), ("false", True), ("yes", False))
    elif "enum" in schema:
        yield from ((value, True) for value in schema["enum"])
        yield "other", False
    else:
        yield from (("x" * schema["maxLength"], True), ("x" * (schema["maxLength"] + 1), False))


def test_the_document_states_exactly_the_limits_the_api_enforces(client, rec):
    spec = client.get("/api/openapi.json").get_json()
    good = good_path_values(rec)
    probed = 0
    for path, operations in spec["paths"].items():
        if "get" not in operations:
            continue
        url = "/api/v1" + urls_with(path, good)
        query = [p for p in operations["get"]["parameters"] if p["in"] == "query"]
        required = {p["name"]: "x" for p in query if p["required"]}
        for parameter in query:
            name, schema = parameter["name"], parameter["schema"]
            for value, accepted in _probes(schema):
                response = client.get(url, query_string={**required, name: value})
                assert response.status_code == (200 if accepted else 400), (path, name, value, response.get_json())
                if not accepted:
                    assert response.get_json()["error"].startswith(f"{name} must"), (path, name, value)
                probed += 1
            if parameter["required"]:
                assert client.get(url).status_code == 400
            else:  # the answer echoes the value used: the default
                assert get_json(client, urls_with(url, {}, required))[name] == schema["default"]
    assert probed > 30


def test_the_documents_limits_are_the_apps_settings(app, client, rec):
    spec = client.get("/api/openapi.json").get_json()
    query = {
        (path, p["name"]): p["schema"] for path, operations in spec["paths"].items() for op in operations.values() for p in op["parameters"]
    }
    config = app.config
    for path in ("/users/{user_id}/recommendations", "/movies/{movie_id}/similar"):
        assert (query[path, "k"]["maximum"], query[path, "k"]["default"]) == (config["K_MAX"], config["K_DEFAULT"])
        assert query[path, "min_ratings"]["maximum"] == params.MAX_MIN_RATINGS
    assert (query["/movies", "limit"]["maximum"], query["/movies", "limit"]["default"]) == (config["SEARCH_LIMIT_MAX"], config["SEARCH_LIMIT_DEFAULT"])
    assert query["/movies", "q"]["maxLength"] == config["MAX_QUERY_LENGTH"] and query["/movies", "offset"]["maximum"] == len(rec.movie_ids)
    body = spec["components"]["schemas"]["NewcomerBody"]
    assert (body["properties"]["k"]["maximum"], body["properties"]["k"]["default"]) == (config["K_MAX"], config["K_DEFAULT"])
    assert body["properties"]["ratings"]["maxItems"] == params.MAX_BODY_RATINGS and body["additionalProperties"] is False
    movie = int(rec.movie_ids[0])
    post_json(client, {"ratings": [], "k": config["K_MAX"]})
    assert "k must be an integer" in post_json(client, {"ratings": [], "k": config["K_MAX"] + 1}, 400)["error"]
    assert "ratings must be a list of at most" in post_json(client, {"ratings": [{"movie_id": movie, "rating": 3}] * (params.MAX_BODY_RATINGS + 1)}, 400)["error"]


def test_answers_have_exactly_the_fields_of_their_models(client, rec):
    good = good_path_values(rec)
    for op in api.OPERATIONS:
        if op.body:
            answer = post_json(client, {"ratings": [{"movie_id": some_movie(rec), "rating": 4}], "k": 3})
        else:
            answer = get_json(client, "/api/v1" + urls_with(op.path, good) + ("?q=movie" if op.name == "search" else ""))
        assert set(answer) == set(op.answer.model_fields), op.name
        op.answer.model_validate(answer)  # and their types
        for item in answer.get("items", []):
            assert set(item) == set(openapi.Item.model_fields)
