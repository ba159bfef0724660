"""Parsing and validation of request parameters, in one place for pages and API.

Every parser raises :class:`ParamError` (a 400) or :class:`NotFound` (a 404)
with a message meant for the person who sent the request; nothing here lets
bad input reach numpy or FAISS, where it could overflow or raise something that
would become a 500.

Rules (the OpenAPI document states the same):

* ids in a path are ASCII integers that fit in int64 (MovieLens ids are
  positive); anything else names no user or movie, so it is a 404;
* ``k`` is an integer from 1 to ``K_MAX`` (default 100), else 400;
* ``include_seen`` is one of true/false/1/0 (any case), else 400;
* ``min_ratings`` is an integer from 0 to ``MAX_MIN_RATINGS``, else 400;
* ``q`` is at most ``MAX_QUERY_LENGTH`` characters, else 400;
* ``sort`` is one of popularity/title/rating, else 400;
* a newcomer's body (``POST /recommendations``) is a JSON object with ``ratings``, a
  list of at most ``MAX_BODY_RATINGS`` objects ``{"movie_id": int, "rating": number}``,
  and optionally ``k``; anything else is a 400 naming the field;
* unknown query parameters get a 400 on the API (a typo such as
  ``includeSeen`` must not be silently ignored) and are ignored on HTML pages
  (browsers and link trackers add their own).
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

from werkzeug.exceptions import BadRequest, NotFound

INT64_MAX = 2**63 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TRUE = {"true", "1"}
_FALSE = {"false", "0"}
SORT_KEYS = ("popularity", "title", "rating")
MAX_BODY_RATINGS = 1000
"""Most ratings a newcomer's request may carry."""


class ParamError(BadRequest):
    """A query parameter with a bad value: answered with 400 and the message."""


def parse_id(raw: str, kind: str) -> int:
    """An id from a URL path; anything that is not an int64 names nothing (404)."""
    if _INTEGER.fullmatch(raw) and len(raw) <= 20 and -INT64_MAX <= int(raw) <= INT64_MAX:
        return int(raw)
    shown = raw if len(raw) <= 40 else raw[:40] + "..."
    raise NotFound(f"unknown {kind} {shown!r}: {kind} ids are integers")


def parse_int(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within ``[low, high]``; ``default`` when absent."""
    raw = args.get(name)
    if raw is None:
        return default
    raw = raw.strip()
    if not _INTEGER.fullmatch(raw):
        raise ParamError(f"{name} must be an integer from {low} to {high}, got {_shorten(raw)!r}")
    # A very long digit string is out of range whatever it says; never int() it
    # (Python refuses over 4300 digits, and nothing here needs that many).
    value = int(raw) if len(raw) <= 20 else None
    if value is None or not low <= value <= high:
        raise ParamError(f"{name} must be an integer from {low} to {high}, got {_shorten(raw)}")
    return value


def parse_number(raw: str, name: str) -> float:
    """A finite number given as text (a form field); anything else is a 400."""
    try:
        value = float(raw.strip()) if len(raw) <= 20 else None
    except ValueError:
        value = None
    if value is None or value != value or value in (float("inf"), float("-inf")):
        raise ParamError(f"{name} must be a number, got {_shorten(raw)!r}")
    return value


MAX_MIN_RATINGS = 1_000_000
"""Largest ``min_ratings`` accepted (more than any movie has)."""


def parse_min_ratings(args: Mapping[str, str]) -> int:
    """``min_ratings``: only movies with at least this many training ratings (0 = all)."""
    return parse_int(args, "min_ratings", 0, 0, MAX_MIN_RATINGS)


def parse_k(args: Mapping[str, str], default: int, cap: int) -> int:
    """The number of answers ``k``: 1..cap."""
    return parse_int(args, "k", default, 1, cap)


def parse_bool(args: Mapping[str, str], name: str, default: bool = False) -> bool:
    """A flag given as true/false/1/0 (any case); anything else is a 400."""
    raw = args.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ParamError(f"{name} must be true, false, 1 or 0, got {_shorten(raw)!r}")


def parse_query(args: Mapping[str, str], max_length: int, required: bool = True) -> str:
    """The title query ``q``, stripped; missing is a 400 when ``required``."""
    raw = args.get("q")
    if raw is None:
        if required:
            raise ParamError("q is required: the text to look for in movie titles")
        return ""
    if len(raw) > max_length:
        raise ParamError(f"q must be at most {max_length} characters, got {len(raw)}")
    if _CONTROL.search(raw):  # e.g. %00, which no title holds and which would match the search's separators
        raise ParamError("q must not contain control characters")
    return raw.strip()


def parse_sort(args: Mapping[str, str], default: str = "popularity") -> str:
    """The order of a cluster's members: one of :data:`SORT_KEYS`."""
    raw = args.get("sort")
    if raw is None:
        return default
    if raw not in SORT_KEYS:
        raise ParamError(f"sort must be one of {', '.join(SORT_KEYS)}, got {_shorten(raw)!r}")
    return raw


def parse_ratings_body(body: object, k_default: int, k_max: int) -> tuple[list[tuple[int, float]], int]:
    """A newcomer's request body as ``([(movie_id, rating), ...], k)``; ratings are
    checked against the rating scale by the recommender."""
    if not isinstance(body, dict):
        raise ParamError('the body must be a JSON object such as {"ratings": [{"movie_id": 1, "rating": 5}], "k": 10}')
    unknown = sorted(set(body) - {"ratings", "k"})
    if unknown:
        raise ParamError(f"unknown field(s) {', '.join(map(repr, map(_shorten, unknown)))}; the body takes ratings and k")
    ratings = body.get("ratings")
    if not isinstance(ratings, list) or len(ratings) > MAX_BODY_RATINGS:
        raise ParamError(f"ratings must be a list of at most {MAX_BODY_RATINGS} objects {{\"movie_id\": int, \"rating\": number}}")
    pairs = []
    for n, entry in enumerate(ratings):
        if not isinstance(entry, dict) or set(entry) != {"movie_id", "rating"}:
            raise ParamError(f'ratings[{n}] must be an object with exactly "movie_id" and "rating"')
        movie_id, rating = entry["movie_id"], entry["rating"]
        if not isinstance(movie_id, int) or isinstance(movie_id, bool) or not -INT64_MAX <= movie_id <= INT64_MAX:
            raise ParamError(f"ratings[{n}].movie_id must be an integer, got {_shorten(repr(movie_id))}")
        if not isinstance(rating, (int, float)) or isinstance(rating, bool):
            raise ParamError(f"ratings[{n}].rating must be a number, got {_shorten(repr(rating))}")
        pairs.append((movie_id, float(rating)))
    k = body.get("k", k_default)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= k_max:
        raise ParamError(f"k must be an integer from 1 to {k_max}, got {_shorten(repr(k))}")
    return pairs, k


def reject_unknown(args: Iterable[str], allowed: Iterable[str]) -> None:
    """400 for query parameters that the route does not take (API only)."""
    allowed = tuple(allowed)
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no query parameters"
        raise ParamError(f"unknown query parameter(s) {', '.join(map(repr, map(_shorten, unknown)))}; this route takes {takes}")


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
