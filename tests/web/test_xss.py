"""Titles, genres and queries are HTML-escaped on every page.

The bundle's titles hold ``<script>alert(1)</script>`` and its genres an
``<img onerror>``; no page may contain either tag raw.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.web.conftest import XSS_GENRE, XSS_TITLE

RAW_TAGS = ("<script>alert", "<img src=x", "<b>bold</b>")


@pytest.fixture(scope="module")
def xss(xss_app):
    return xss_app.test_client(), xss_app.extensions["movie_web"].rec


def assert_escaped(html: str) -> None:
    for tag in RAW_TAGS:
        assert tag not in html, tag


def evil_movie(rec) -> int:
    return next(int(m) for m in rec.movie_ids if rec.catalogue.movie(int(m))["title"] == XSS_TITLE)


def page_urls(rec) -> list[str]:
    movie = evil_movie(rec)
    cluster = rec.catalogue.cluster_of(movie)
    user = int(rec.user_ids[0])
    return [
        "/",
        f"/movies/{movie}",
        f"/users/{user}?k=30&include_seen=1",
        "/clusters",
        f"/clusters/{cluster}",
        f"/clusters/{cluster}?sort=title",
        "/search?q=" + quote("<script>"),
        "/search?q=" + quote("evil"),
        "/model",
    ]


def test_titles_and_genres_are_escaped_on_every_page(xss):
    client, rec = xss
    for url in page_urls(rec):
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.get_data(as_text=True)
        assert_escaped(html)
    movie_page = client.get(f"/movies/{evil_movie(rec)}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Evil &amp; Co (1999)" in movie_page
    assert "&lt;img src=x onerror=alert(2)&gt;" in movie_page
    search = client.get("/search?q=" + quote("<script>")).get_data(as_text=True)
    assert "&lt;script&gt;" in search and f'href="/movies/{evil_movie(rec)}"' in search


def test_error_pages_escape_the_request(xss):
    client, _ = xss
    for url in (
        "/users/" + quote("<script>alert(1)</script>"),
        "/movies/%3Cimg%20src=x%3E",
        "/users/1?k=" + quote("<script>alert(1)</script>"),
    ):
        response = client.get(url)
        assert response.status_code in (400, 404)
        assert_escaped(response.get_data(as_text=True))


def test_json_carries_the_raw_title_as_json(xss):
    client, rec = xss
    response = client.get(f"/api/v1/movies/{evil_movie(rec)}")
    assert response.mimetype == "application/json"
    assert response.get_json()["title"] == XSS_TITLE and XSS_GENRE in response.get_json()["genres"]


def test_cluster_map_has_no_titles(xss):
    client, _ = xss
    svg = client.get("/clusters/map.svg").get_data(as_text=True)
    assert "script" not in svg and "<img" not in svg
