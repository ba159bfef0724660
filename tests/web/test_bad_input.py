"""No request can produce a 500: every route is walked with bad values.

Bad path values and bad query values are sent to every route of the app (the
list comes from the app's own URL map, so a new route is walked too). The API
must answer a JSON ``{"error": ...}``, the pages an HTML page.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.web.test_api import some_movie, some_user

BAD_IDS = [
    "abc", "1e3", "1.5", "-1", "0", "+5", "0x10", "1_000", "99999999", "9" * 30, str(2**63),
    str(-(2**63) - 1),
    "%20", "%00", "%3Cscript%3E", "\u0661\u0662", "é", "1%0A", "..", "%2E%2E%2Fmanifest.json",
]  # fmt: skip
BAD_QUERIES = [
    *(
        {"k": v}
        for v in [
            "0",
            "-1",
            "abc",
            str(10**30),
            "9" * 5000,
            "1.5",
            "",
            " ",
            "1e3",
            "\x00",
            "101",
            "+",
            "--1",
            "٣",
        ]
    ),
    *({"include_seen": v} for v in ["maybe", "", "2", "yes", "<script>", "tru"]),
    *(
        {"q": v}
        for v in [
            "",
            "%",
            "_",
            "a" * 10_000,
            "é☃🎬",
            "<script>alert(1)</script>",
            "(",
            "[",
            "\\",
            "*",
            ".*",
            "\x00",
            " ",
        ]
    ),
    *({"limit": v} for v in ["0", "abc", "1000", "-3"]),
    *({"sort": v} for v in ["x", "", "POPULARITY", "rating;drop"]),
    *({"id": v} for v in ["abc", "", "9" * 40, "<b>"]),
    {"unknown": "1"},
    {"k": ["1", "abc"]},
]
# Raw query strings that urlencode cannot make: bytes that are not UTF-8, a lone
# surrogate, broken escapes.
RAW_QUERIES = ["q=%ED%A0%80", "q=%FF%FE", "k=%FF", "k=%", "q=%zz", "include_seen=%C0%80", "&&&", "=1", "k"]


def good_path_values(rec) -> dict[str, str]:
    return {
        "user_id": str(some_user(rec)),
        "movie_id": str(some_movie(rec)),
        "c": "0",
        "filename": "style.css",
    }


def routes(app) -> list[str]:
    """Every GET rule of the app, with its path arguments as ``{name}``."""
    return sorted(
        re.sub(r"<(?:[^:>]+:)?(\w+)>", r"{\1}", rule.rule)
        for rule in app.url_map.iter_rules()
        if "GET" in (rule.methods or ())
    )


def check(client, url: str) -> None:
    response = client.get(url)
    status = response.status_code
    body = response.get_data()
    response.close()
    assert status < 500, f"{url} -> {status}: {body[:300]!r}"
    if status >= 400:
        if url.startswith("/api/"):
            assert response.mimetype == "application/json", url
            assert isinstance(response.get_json().get("error"), str), url
        else:
            assert response.mimetype == "text/html", url
            assert b"Traceback" not in body


def urls_with(route: str, values: dict[str, str], query: dict | None = None) -> str:
    path = route
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    if query:
        path += "?" + urlencode(query, doseq=True)
    return path


@pytest.mark.parametrize("area", ["api", "pages"])
def test_every_route_with_bad_values(app, client, rec, area):
    good = good_path_values(rec)
    walked = 0
    for route in routes(app):
        if route.startswith("/api/") != (area == "api"):
            continue
        names = [n for n in good if "{" + n + "}" in route]
        for query in BAD_QUERIES:
            check(client, urls_with(route, good, query))
            walked += 1
        for raw in RAW_QUERIES:
            check(client, urls_with(route, good) + "?" + raw)
        for name in names:
            for bad in BAD_IDS:
                check(client, urls_with(route, {**good, name: bad}))
                walked += 1
    assert walked > 200


def test_bad_values_on_an_unbuilt_bundle(unbuilt_app):
    client = unbuilt_app.test_client()
    rec = unbuilt_app.extensions["movie_web"].rec
    good = good_path_values(rec)
    for route in routes(unbuilt_app):
        for query in ({}, *BAD_QUERIES[:3]):
            check(client, urls_with(route, good, query))


def test_other_methods_are_405_not_500(app, client, rec):
    good = good_path_values(rec)
    for route in routes(app):
        url = urls_with(route, good)
        for method in ("post", "put", "delete", "patch"):
            response = getattr(client, method)(url, data=b"{bad json")
            assert response.status_code == 405, (method, url)
            if url.startswith("/api/"):
                assert response.get_json()["status"] == 405


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(
        [
            "/api/v1/users/{}/recommendations",
            "/api/v1/movies/{}/similar",
            "/api/v1/movies/{}",
            "/api/v1/clusters/{}",
            "/users/{}",
            "/movies/{}",
            "/clusters/{}",
        ]
    ),
    raw_id=st.text(max_size=30),
    k=st.one_of(st.none(), st.text(max_size=30), st.integers().map(str)),
    q=st.text(max_size=300),
)
def test_random_text_never_500(client, path, raw_id, k, q):
    url = path.format(quote(raw_id, safe="") or "x")
    query = {"q": q} if "movies/{}" == path[-10:] else {}
    if k is not None:
        query["k"] = k
    check(client, url + ("?" + urlencode(query) if query else ""))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.text(max_size=250), limit=st.one_of(st.none(), st.integers(-5, 80).map(str), st.text(max_size=5)))
def test_title_search_never_500(client, q, limit):
    query = {"q": q} if limit is None else {"q": q, "limit": limit}
    check(client, "/api/v1/movies?" + urlencode(query))
    check(client, "/search?" + urlencode(query))


def test_doubled_slashes_are_not_redirected_to_the_requests_host(client):
    response = client.get("/api//v1//healthz", headers={"Host": "evil.example"})
    assert response.status_code == 404 and "Location" not in response.headers


@pytest.mark.parametrize("q", ["%00", "star%0Awars", "a%1Fb", "%7F"])
def test_a_title_query_with_control_characters_is_a_400(client, q):
    response = client.get(f"/api/v1/movies?q={q}")
    assert response.status_code == 400 and response.get_json()["error"].startswith(
        "q: String should match pattern"
    )


@pytest.mark.parametrize("url", ["/api/v1/healthz", "/", "/static/style.css", "/api/v1/movies/0"])
def test_every_answer_says_nosniff_and_a_same_origin_referrer_policy(client, url):
    response = client.get(url)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
