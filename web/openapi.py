"""The OpenAPI 3.1 document of ``/api/v1``, served at ``/api/openapi.json``.

Written by hand beside the views; a test checks that it lists exactly the
routes the app has, and schemathesis-style checks run requests from it.
"""

from __future__ import annotations

from search.similar import EMBEDDING_WEIGHT
from web.answers import ALLOWED
from web.params import MAX_BODY_RATINGS, MAX_MIN_RATINGS


def _object(properties: dict, required: list[str] | None = None) -> dict:
    """An object schema; ``required`` defaults to none."""
    schema: dict = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _array(items: dict) -> dict:
    return {"type": "array", "items": items}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


def _path_id(name: str, what: str) -> dict:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"{what} (an integer; anything else names nothing and gets 404)",
        "schema": {"type": "integer", "format": "int64"},
    }


def _query(name: str, description: str, schema: dict, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _k(default: int, cap: int) -> dict:
    return _query(
        "k",
        f"How many answers: an integer from 1 to {cap} (default {default}); anything else is a 400.",
        {"type": "integer", "minimum": 1, "maximum": cap, "default": default},
    )


def _min_ratings() -> dict:
    return _query(
        "min_ratings",
        f"Only movies with at least this many training ratings: an integer from 0 (default, all) to {MAX_MIN_RATINGS}; "
        "a floor keeps obscure movies with a few lucky ratings out.",
        {"type": "integer", "minimum": 0, "maximum": MAX_MIN_RATINGS, "default": 0},
    )


def _operation(route: str, summary: str, parameters: list[dict], ok: dict, *, errors: dict) -> dict:
    """One GET operation; the allowed-parameter note comes from :data:`ALLOWED`."""
    takes = ", ".join(ALLOWED[route]) or "none"
    return {
        "get": {
            "operationId": route,
            "summary": summary,
            "description": f"Query parameters taken: {takes}. Any other query parameter is a 400.",
            "parameters": parameters,
            "responses": {"200": ok, **errors},
        }
    }


def _post_operation(route: str, summary: str, body: dict, ok: dict, *, errors: dict) -> dict:
    """One POST operation with a JSON body and no query parameters."""
    return {
        "post": {
            "operationId": route,
            "summary": summary,
            "description": "No query parameters (any is a 400). A body that is not as described is a 400 naming the field.",
            "parameters": [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"200": ok, **errors},
        }
    }


def spec(*, k_default: int, k_max: int, search_default: int, search_max: int, max_query: int, n_movies: int) -> dict:
    """The document, with the limits of the running app (and its bundle) written in."""
    bad = {"400": _error("A bad or unknown query parameter; the message names it.")}
    missing = {**bad, "404": _error("Unknown id.")}
    not_built = "the bundle has no clusters yet (`python -m search build`)"
    items = _array(_ref("Item"))
    integer, number, string = {"type": "integer"}, {"type": "number"}, {"type": "string"}
    nullable = lambda kind: {"type": [kind, "null"]}  # noqa: E731
    paths = {
        "/users/{user_id}/recommendations": _operation(
            "recommendations",
            "Top-k movies for a user by predicted rating (score = raw predicted rating).",
            [
                _path_id("user_id", "MovieLens user id"),
                _k(k_default, k_max),
                _query(
                    "include_seen",
                    "Also recommend movies the user rated in training: true, false, 1 or 0 (default false).",
                    {"type": "string", "enum": ["true", "false", "1", "0"], "default": "false"},
                ),
                _min_ratings(),
            ],
            _json(
                _object(
                    {"user_id": integer, "k": integer, "include_seen": {"type": "boolean"}, "min_ratings": integer, "items": items},
                    ["user_id", "k", "include_seen", "min_ratings", "items"],
                ),
                "Best first.",
            ),
            errors=missing,
        ),
        "/recommendations": _post_operation(
            "newcomer_recommendations",
            "Top-k movies for someone not in the bundle, from their ratings: folded in without retraining "
            "(score = raw predicted rating, rated movies left out). No ratings: the average user's list among widely rated movies.",
            {
                **_object(
                    {
                        "ratings": {
                            **_array(_object({"movie_id": {**integer, "format": "int64"}, "rating": number}, ["movie_id", "rating"])),
                            "maxItems": MAX_BODY_RATINGS,
                            "description": "Each movie once, ratings within the bundle's rating scale.",
                        },
                        "k": {"type": "integer", "minimum": 1, "maximum": k_max, "default": k_default},
                    },
                    ["ratings"],
                ),
                "additionalProperties": False,
            },
            _json(
                _object(
                    {"ratings": _array(_object({"movie_id": integer, "rating": number})), "k": integer, "fallback": {"type": "boolean"}, "items": items},
                    ["ratings", "k", "fallback", "items"],
                ),
                "Best first.",
            ),
            errors={"400": _error("A bad body (an unknown movie, a rating off the scale, a movie twice, a bad k); the message names it.")},
        ),
        "/movies/{movie_id}/similar": _operation(
            "similar",
            f"The k movies most like a movie, the movie itself excluded: {EMBEDDING_WEIGHT:g} x the cosine of the two movies' "
            f"embeddings + {1 - EMBEDDING_WEIGHT:g} x the cosine of who rated them in training (the users who rated both "
            "/ sqrt(n_i n_j), n: a movie's training ratings).",
            [_path_id("movie_id", "MovieLens movie id"), _k(k_default, k_max), _min_ratings()],
            _json(
                _object({"movie_id": integer, "k": integer, "min_ratings": integer, "items": items}, ["movie_id", "k", "min_ratings", "items"]),
                "Best first (score = that blend, at most 1). A movie without training ratings has nothing to compare and gets no items.",
            ),
            errors=missing,
        ),
        "/movies": _operation(
            "search",
            "Title search, forgiving: exact titles, then prefixes, then titles containing q, then every word in any order "
            "(numbers as digits), then words run together, then close spellings; most rated first within each.",
            [
                _query("q", f"Part of a title, at most {max_query} characters; blank gives no items.", {"type": "string", "maxLength": max_query}, required=True),
                _query(
                    "limit",
                    f"Most answers: 1 to {search_max} (default {search_default}).",
                    {"type": "integer", "minimum": 1, "maximum": search_max, "default": search_default},
                ),
                _query(
                    "offset",
                    f"Matches to skip, for the next page: 0 to {n_movies} (the number of movies; default 0).",
                    {"type": "integer", "minimum": 0, "maximum": n_movies, "default": 0},
                ),
            ],
            _json(
                _object(
                    {"query": string, "limit": integer, "offset": integer, "total": integer, "more": {"type": "boolean"}, "items": items},
                    ["query", "limit", "offset", "total", "more", "items"],
                ),
                "One page of matches, best first (score is null); total: every match; more: there are matches after this page.",
            ),
            errors=bad,
        ),
        "/movies/{movie_id}": _operation(
            "movie", "One movie.", [_path_id("movie_id", "MovieLens movie id")], _json(_ref("Movie"), "The movie."), errors=missing
        ),
        "/clusters": _operation(
            "clusters",
            "Every K-Means cluster of movies: size, label, mean rating, most-rated movies, genre mix with lift.",
            [],
            _json(_object({"n_clusters": integer, "clusters": _array(_ref("Cluster"))}, ["n_clusters", "clusters"]), "All clusters, by number."),
            errors={**bad, "404": _error(not_built.capitalize() + ".")},
        ),
        "/clusters/{c}": _operation(
            "cluster",
            "One cluster's summary and all its movies.",
            [
                _path_id("c", "Cluster number, 0 to n_clusters - 1"),
                _query(
                    "sort",
                    "Order of the movies: popularity (most rated first, default), title, or rating (highest mean first).",
                    {"type": "string", "enum": ["popularity", "title", "rating"], "default": "popularity"},
                ),
            ],
            _json({"allOf": [_ref("Cluster"), _object({"sort": string, "items": items}, ["sort", "items"])]}, "The cluster and its movies (score is null)."),
            errors={**bad, "404": _error(f"Unknown cluster, or {not_built}.")},
        ),
        "/model": _operation(
            "model",
            "The model's figures, the manifest's metrics, training settings, and train/validation RMSE per epoch.",
            [],
            _json(
                _object(
                    {
                        **{key: {"type": "object"} for key in ("summary", "metrics", "training", "config", "clusters")},
                        "history": _array(
                            _object(
                                {
                                    "epoch": integer,
                                    "train_rmse": number,
                                    "val_rmse": nullable("number"),
                                    "phase": {**string, "description": "training (one run on all training data), or validation (a held-out part) then refit (all training data)"},
                                }
                            )
                        ),
                    },
                    ["summary", "metrics", "history"],
                ),
                "The figures.",
            ),
            errors=bad,
        ),
        "/healthz": _operation(
            "healthz",
            "Liveness: the bundle is loaded; the folder being served, and the last bundle refused by a hot reload (null if none since).",
            [],
            _json(
                _object(
                    {
                        "status": {"const": "ok"},
                        "n_users": integer,
                        "n_movies": integer,
                        "bundle": string,
                        "last_refusal": {"type": ["object", "null"], "properties": {"bundle": string, "error": string, "at": string}},
                    },
                    ["status", "bundle", "last_refusal"],
                ),
                "Serving.",
            ),
            errors=bad,
        ),
    }
    movie = {
        "movie_id": integer,
        "title": string,
        "genres": _array(string),
        "rating_count": integer,
        "mean_rating": nullable("number"),
        "cluster": {**nullable("integer"), "description": "null before `python -m search build`, or for a movie without training ratings (not clustered)"},
    }
    cluster = {
        "cluster": integer,
        "size": integer,
        "label": {**string, "description": "up to two genres over-represented in it (at least 15% of its movies, lift above 1), made unique with its most-rated title where two would read the same"},
        "mean_rating": nullable("number"),
        "top_movies": _array(_object({"movie_id": integer, "title": string, "rating_count": integer})),
        "genres": _array(_object({"genre": string, "share": number, "catalogue_share": number, "lift": number})),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Movie embeddings API",
            "version": "1.0.0",
            "description": (
                "Recommendations, similar movies, title search and clusters over one exported bundle. "
                "Ids are the original MovieLens ids. Items have the same fields as `python -m search recommend --json`. "
                f"k is capped at {k_max}. Unknown query parameters get 400. Errors are JSON {{\"error\": message, \"status\": code}}."
            ),
        },
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {
            "schemas": {
                "Movie": _object(movie, list(movie)),
                "Item": {
                    **_object({**movie, "score": nullable("number")}, [*movie, "score"]),
                    "description": "A movie in an answer, with its score (null where the answer has none).",
                },
                "Cluster": _object(cluster, list(cluster)),
                "Error": _object({"error": string, "status": integer}, ["error", "status"]),
            }
        },
    }
