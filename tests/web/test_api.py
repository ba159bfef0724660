"""The JSON API: every route's answer, checked against search.Recommender."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from web.state import WebState

ITEM_FIELDS = {"movie_id", "title", "score", "genres", "rating_count", "mean_rating", "cluster"}
RECOMMENDED_FIELDS = ITEM_FIELDS | {"relevance", "because"}


def get_json(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


def some_user(rec) -> int:
    return int(rec.user_ids[3])


def some_movie(rec) -> int:
    """A well-rated movie (it has a direction, so "movies like this" is not empty)."""
    return int(rec.movie_ids[int(np.argmax(rec.bundle.movies["rating_count"].to_numpy()))])


def without_because(items):
    return [{key: value for key, value in item.items() if key != "because"} for item in items]


def test_recommendations_equal_the_recommender_in_both_orders(client, rec):
    user = some_user(rec)
    body = get_json(client, f"/api/v1/users/{user}/recommendations?k=7")
    ids, scores, relevance = rec.recommend(user, k=7)
    assert body["user_id"] == user and body["k"] == 7 and body["include_seen"] is False
    assert body["order"] == "relevance" and rec.relevance is not None
    # The CLI --json rows, field for field, and each item's "because you rated".
    assert without_because(body["items"]) == rec.catalogue.items(ids, scores, relevance)
    assert all(set(item) == RECOMMENDED_FIELDS for item in body["items"])
    assert [i["relevance"] for i in body["items"]] == sorted(
        (i["relevance"] for i in body["items"]), reverse=True
    )
    rows = np.full(len(ids), rec.bundle.user_vocab.number(user))
    predicted = rec.bundle.model.predict(rows, rec.bundle.movie_vocab.numbers(ids), clip=False)
    np.testing.assert_allclose([i["score"] for i in body["items"]], predicted, atol=1e-4)
    by_rating = get_json(client, f"/api/v1/users/{user}/recommendations?k=7&order=rating")
    ids, scores, relevance = rec.recommend(user, k=7, order="rating")
    assert by_rating["order"] == "rating"
    assert without_because(by_rating["items"]) == rec.catalogue.items(ids, scores, relevance)
    assert [i["score"] for i in by_rating["items"]] == sorted(
        (i["score"] for i in by_rating["items"]), reverse=True
    )


def test_a_bad_order_is_a_400_naming_the_allowed_values(client, rec):
    response = client.get(f"/api/v1/users/{some_user(rec)}/recommendations?order=best")
    assert response.status_code == 400
    assert (
        "order" in response.get_json()["error"] and "'relevance' or 'rating'" in response.get_json()["error"]
    )
    response = client.post("/api/v1/recommendations", json={"ratings": [], "order": "x"})
    assert response.status_code == 400 and "order" in response.get_json()["error"]


def test_recommendations_default_k_and_include_seen(client, rec, app):
    user = some_user(rec)
    default = get_json(client, f"/api/v1/users/{user}/recommendations")
    assert len(default["items"]) == app.config["K_DEFAULT"]
    seen_movies = set(rec.catalogue.user_ratings(user)[0].tolist())
    assert not seen_movies & {i["movie_id"] for i in default["items"]}
    for flag in ("true", "1", "TRUE"):
        body = get_json(client, f"/api/v1/users/{user}/recommendations?k=50&include_seen={flag}")
        answer = rec.recommend(user, k=50, exclude_seen=False)
        assert body["include_seen"] is True and without_because(body["items"]) == rec.catalogue.items(*answer)
    body = get_json(client, f"/api/v1/users/{user}/recommendations?include_seen=0")
    assert body["include_seen"] is False


def test_similar_equals_the_recommender(client, rec):
    movie = some_movie(rec)
    body = get_json(client, f"/api/v1/movies/{movie}/similar?k=5")
    ids, scores = rec.similar(movie, k=5)
    assert body == {"movie_id": movie, "k": 5, "min_ratings": 0, "items": rec.catalogue.items(ids, scores)}
    assert len(body["items"]) == 5 and movie not in {i["movie_id"] for i in body["items"]}


def test_a_ratings_floor_leaves_rarely_rated_movies_out(client, rec):
    movie, user = some_movie(rec), some_user(rec)
    counts = rec.bundle.movies.set_index("movie_id")["rating_count"]
    floor = int(counts.median())
    similar = get_json(client, f"/api/v1/movies/{movie}/similar?k=8&min_ratings={floor}")
    ids, scores = rec.similar(movie, k=8, min_ratings=floor)
    assert similar["min_ratings"] == floor and similar["items"] == rec.catalogue.items(ids, scores)
    assert all(counts[i["movie_id"]] >= floor for i in similar["items"])
    body = get_json(client, f"/api/v1/users/{user}/recommendations?k=8&min_ratings={floor}")
    assert all(counts[i["movie_id"]] >= floor for i in body["items"]) and body["min_ratings"] == floor
    for bad in ("-1", "x", "1000001"):
        assert (
            "min_ratings: Input should be"
            in get_json(client, f"/api/v1/movies/{movie}/similar?min_ratings={bad}", 400)["error"]
        )


def test_k_cap_is_allowed_and_one_over_is_not(client, rec, app):
    cap = app.config["K_MAX"]
    user = some_user(rec)
    assert get_json(client, f"/api/v1/users/{user}/recommendations?k={cap}")["k"] == cap
    error = get_json(client, f"/api/v1/users/{user}/recommendations?k={cap + 1}", 400)
    assert f"k: Input should be less than or equal to {cap}" in error["error"]


def test_title_search(client, rec):
    title = rec.catalogue.movie(some_movie(rec))["title"]
    body = get_json(client, "/api/v1/movies?q=" + title[:5].lower())
    ids = rec.catalogue.find_movies(title[:5].lower(), limit=10)
    assert [i["movie_id"] for i in body["items"]] == ids
    assert body["items"] == [{**rec.catalogue.movie(i), "score": None} for i in ids]
    assert all(set(item) == ITEM_FIELDS for item in body["items"])
    assert len(get_json(client, "/api/v1/movies?q=movie&limit=3")["items"]) <= 3
    assert get_json(client, "/api/v1/movies?q=")["items"] == []
    assert get_json(client, "/api/v1/movies?q=zzzz-no-such-title")["items"] == []


def test_title_search_says_when_matches_were_left_out(client, rec):
    every = rec.catalogue.find_movies("movie", limit=1000)  # the tiny bundle's titles are "Movie N"
    assert len(every) > 3
    short = get_json(client, "/api/v1/movies?q=movie&limit=3")
    assert short["more"] is True and [i["movie_id"] for i in short["items"]] == every[:3]
    assert get_json(client, f"/api/v1/movies?q=movie&limit={min(len(every), 50)}")["more"] is (
        len(every) > 50
    )
    page = client.get("/search?q=movie&limit=3").get_data(as_text=True)
    assert (
        f"{len(every)} matches; 1–3 shown." in page
        and 'rel="next" href="/search?q=movie&amp;limit=3&amp;offset=3"' in page
    )


def test_title_search_pages_through_every_match_once(client, rec):
    every = rec.catalogue.find_movies("movie", limit=1000)
    pages, offset = [], 0
    while True:
        answer = get_json(client, f"/api/v1/movies?q=movie&limit=7&offset={offset}")
        assert answer["total"] == len(every) and answer["offset"] == offset
        pages.append([i["movie_id"] for i in answer["items"]])
        if not answer["more"]:
            break
        offset += 7
    assert sum(pages, []) == every and all(len(p) == 7 for p in pages[:-1])
    assert get_json(client, f"/api/v1/movies?q=movie&offset={len(every)}")["items"] == []
    last = client.get(f"/search?q=movie&limit=7&offset={offset}").get_data(as_text=True)
    assert 'rel="prev"' in last and 'rel="next"' not in last
    assert f'<td class="rank">{offset + 1}</td>' in last  # ranks go on from the pages before
    for bad in ("-1", "x", str(10**7 + 1)):
        assert client.get(f"/api/v1/movies?q=movie&offset={bad}").status_code == 400


def test_title_search_needs_q(client):
    assert "q: Field required" in get_json(client, "/api/v1/movies", 400)["error"]


def test_movie(client, rec):
    movie = some_movie(rec)
    assert get_json(client, f"/api/v1/movies/{movie}") == rec.catalogue.movie(movie)


def test_clusters(client, rec):
    body = get_json(client, "/api/v1/clusters")
    assert body == {"n_clusters": 4, "clusters": rec.catalogue.clusters()}
    assert sum(c["size"] for c in body["clusters"]) == len(rec.movie_ids)


@pytest.mark.parametrize("sort", ["popularity", "title", "rating"])
def test_cluster_members(client, rec, sort):
    body = get_json(client, f"/api/v1/clusters/1?sort={sort}")
    assert body["sort"] == sort and body["cluster"] == 1 and body["size"] == len(body["items"])
    assert [i["movie_id"] for i in body["items"]] == rec.catalogue.cluster_members(1, sort=sort)
    assert all(i["cluster"] == 1 and i["score"] is None for i in body["items"])


def test_cluster_default_sort_is_popularity(client):
    body = get_json(client, "/api/v1/clusters/0")
    counts = [i["rating_count"] for i in body["items"]]
    assert body["sort"] == "popularity" and counts == sorted(counts, reverse=True)


def test_model(client, rec):
    body = get_json(client, "/api/v1/model")
    summary = WebState(rec).summary
    assert body["summary"] == summary
    assert body["metrics"]["test"]["rmse"] == pytest.approx(summary["test_rmse"])
    assert (
        summary["built"] is True
        and summary["n_clusters"] == 4
        and summary["n_ratings"] == rec.bundle.seen.nnz
    )
    with open(rec.bundle.path / "history.csv") as handle:
        assert len(body["history"]) == sum(1 for _ in handle) - 1
    assert {"epoch", "train_rmse", "val_rmse", "phase"} == set(body["history"][0])
    assert body["history"][0]["phase"] == "training"  # the default: one chain on all training rows


def test_healthz(client, rec):
    assert get_json(client, "/api/v1/healthz") == {
        "status": "ok",
        "n_users": len(rec.user_ids),
        "n_movies": len(rec.movie_ids),
        "bundle": str(rec.bundle.path),
        "last_refusal": None,
    }


def test_unknown_query_parameters_are_400_naming_them(client, rec):
    user = some_user(rec)
    error = get_json(client, f"/api/v1/users/{user}/recommendations?k=3&includeSeen=1", 400)
    assert error["error"] == "unknown query parameter 'includeSeen'"
    assert error["status"] == 400
    get_json(client, "/api/v1/healthz?verbose=1", 400)


def test_unknown_ids_are_json_404(client, rec):
    missing = int(rec.user_ids.max()) + 1
    error = get_json(client, f"/api/v1/users/{missing}/recommendations", 404)
    assert error == {"error": f"unknown user {missing}", "status": 404}
    assert "unknown movie" in get_json(client, "/api/v1/movies/999999/similar", 404)["error"]
    assert "unknown movie" in get_json(client, "/api/v1/movies/999999", 404)["error"]
    assert "unknown cluster" in get_json(client, "/api/v1/clusters/4", 404)["error"]


def test_wrong_method_is_json_405(client):
    response = client.post("/api/v1/healthz")
    assert response.status_code == 405 and response.get_json()["status"] == 405
    assert "GET" in response.headers["Allow"]


SUMMARY_FIELDS = [
    "dataset",
    "n_users",
    "n_movies",
    "n_ratings",
    "dim",
    "test_rmse",
    "test_mae",
    "rating_scale",
    "index",
    "built",
    "n_clusters",
    "silhouette",
    "nmi_genres",
    "nmi_random",
    "created",
]


def test_the_summary_of_an_unbuilt_bundle(unbuilt_app):
    """The model's figures (home page, footer, /api/v1/model) before ``search build``."""
    rec = unbuilt_app.extensions["movie_web"].rec
    summary = WebState(rec).summary
    json.dumps(summary)
    assert list(summary) == SUMMARY_FIELDS
    assert summary["n_users"] == len(rec.user_ids) and summary["n_movies"] == len(rec.movie_ids)
    assert summary["index"] == "flat" and summary["built"] is False and summary["n_clusters"] is None
    assert summary["test_rmse"] > 0
    assert get_json(unbuilt_app.test_client(), "/api/v1/model")["summary"] == summary


def test_unbuilt_bundle_clusters_are_404_with_the_build_hint(unbuilt_app):
    client = unbuilt_app.test_client()
    for url in ("/api/v1/clusters", "/api/v1/clusters/0"):
        error = get_json(client, url, 404)
        assert "python -m search build" in error["error"]
    rec = unbuilt_app.extensions["movie_web"].rec
    user = int(rec.user_ids[0])
    items = get_json(client, f"/api/v1/users/{user}/recommendations?k=3")["items"]
    assert items and all(i["cluster"] is None for i in items)


def test_openapi_lists_every_api_route(client, app):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    spec = json.loads(response.get_data(as_text=True))
    assert spec["openapi"].startswith("3.")
    routes = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
    }
    assert set(spec["paths"]) == routes
    k = next(
        p
        for p in spec["paths"]["/api/v1/users/{user_id}/recommendations"]["get"]["parameters"]
        if p["name"] == "k"
    )
    assert k["schema"]["maximum"] == app.config["K_MAX"]
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == {part[1:-1] for part in path.split("/") if part.startswith("{")}, path


def test_openapi_item_schema_matches_the_answers(client, rec):
    spec = client.get("/api/openapi.json").get_json()
    item = spec["components"]["schemas"]["Item"]
    assert set(item["required"]) == set(item["properties"]) == ITEM_FIELDS
    movie = spec["components"]["schemas"]["Movie"]
    assert set(movie["required"]) == set(rec.catalogue.movie(some_movie(rec)))


def test_a_bug_is_a_logged_500_without_internals(app, client, rec, monkeypatch, caplog):
    """The catch-all: an unexpected error answers 500 in the area's form, with no traceback."""

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(rec, "recommend", broken)
    user = some_user(rec)
    response = client.get(f"/api/v1/users/{user}/recommendations")
    assert response.status_code == 500 and response.get_json()["status"] == 500
    page = client.get(f"/users/{user}")
    assert page.status_code == 500 and page.mimetype == "text/html"
    for body in (response.get_data(as_text=True), page.get_data(as_text=True)):
        assert "secret internal detail" not in body and "Traceback" not in body
    assert "secret internal detail" in caplog.text  # logged for whoever runs the server


def post_json(client, body, status=200, **kwargs):
    response = client.post("/api/v1/recommendations", json=body, **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


def test_newcomer_recommendations_equal_the_recommenders_fold_in(client, rec):
    first, second = (int(m) for m in rec.movie_ids[:2])
    low, high = rec.bundle.rating_scale
    body = {"ratings": [{"movie_id": first, "rating": high}, {"movie_id": second, "rating": low}], "k": 4}
    answer = post_json(client, body)
    ids, scores, _ = rec.recommend_for_ratings({first: high, second: low}, k=4)
    assert [item["movie_id"] for item in answer["items"]] == ids.tolist()
    assert [item["score"] for item in answer["items"]] == pytest.approx(scores.tolist(), abs=1e-6)
    assert answer["ratings"] == body["ratings"] and answer["k"] == 4 and answer["fallback"] is False
    assert set(answer["items"][0]) == RECOMMENDED_FIELDS


def test_newcomer_without_ratings_gets_the_fallback(client, app):
    answer = post_json(client, {"ratings": []})
    assert answer["fallback"] is True and len(answer["items"]) == app.config["K_DEFAULT"]


@pytest.mark.parametrize(
    "body, message",
    [
        ([1, 2], "body: Input should be a valid dictionary"),
        ({"ratings": [], "user": 3}, "unknown field 'user'"),
        ({"k": 3}, "ratings: Field required"),
        ({"ratings": [{"movie_id": 1}]}, "ratings[0].rating: Field required"),
        (
            {"ratings": [{"movie_id": "1", "rating": 4}]},
            "ratings[0].movie_id: Input should be a valid integer",
        ),
        (
            {"ratings": [{"movie_id": True, "rating": 4}]},
            "ratings[0].movie_id: Input should be a valid integer",
        ),
        (
            {"ratings": [{"movie_id": 2**70, "rating": 4}]},
            "ratings[0].movie_id: Input should be less than or equal",
        ),
        ({"ratings": [{"movie_id": 1, "rating": "4"}]}, "ratings[0].rating: Input should be a valid number"),
        ({"ratings": [{"movie_id": 1, "rating": 4, "x": 0}]}, "unknown field 'ratings[0].x'"),
        ({"ratings": [{"movie_id": 1, "rating": 99}]}, "rating of movie 1 must be a number from"),
        ({"ratings": [{"movie_id": 999999, "rating": 4}]}, "unknown movie 999999"),
        (
            {"ratings": [{"movie_id": 1, "rating": 4}, {"movie_id": 1, "rating": 3}]},
            "movie 1 is rated more than once",
        ),
        ({"ratings": [], "k": 0}, "k: Input should be greater than or equal to 1"),
        ({"ratings": [], "k": True}, "k: Input should be a valid integer"),
        ({"ratings": [{"movie_id": 1, "rating": 4}] * 1001}, "ratings: List should have at most 1000 items"),
    ],
)
def test_bad_newcomer_bodies_are_400_naming_the_problem(client, rec, body, message):
    if 1 not in rec.bundle.movie_vocab:
        pytest.skip("the test bundle has no movie 1")
    error = post_json(client, body, 400)
    assert message in error["error"] and error["status"] == 400


def test_a_newcomer_body_that_is_not_json_is_400(client):
    response = client.post("/api/v1/recommendations", data="ratings=1", content_type="text/plain")
    assert (
        response.status_code == 400
        and "body: Input should be a valid dictionary" in response.get_json()["error"]
    )
    assert (
        post_json(client, {"ratings": []}, 400, query_string={"k": 3})["error"]
        == "unknown query parameter 'k'"
    )
    assert client.get("/api/v1/recommendations").status_code == 405


def test_a_body_over_max_content_length_is_413(client, app):
    body = b'{"ratings": [], "pad": "' + b" " * app.config["MAX_CONTENT_LENGTH"] + b'"}'
    response = client.post("/api/v1/recommendations", data=body, content_type="application/json")
    assert response.status_code == 413 and response.get_json()["status"] == 413


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_json_nested_too_deeply_is_400_naming_the_problem(client, depth):
    body = "[" * depth + "]" * depth
    response = client.post("/api/v1/recommendations", data=body, content_type="application/json")
    assert (
        response.status_code == 400 and response.get_json()["error"] == "the JSON body is nested too deeply"
    )
