"""What a request may carry, declared once: pydantic models of each route's query
parameters and of the newcomer's JSON body (:class:`Requests`). The views check
requests with them and the OpenAPI document (:mod:`web.openapi`) is generated from
them, so every limit is written here and nowhere else.

A bad value is a :class:`ParamError` (400) whose message names the parameter and
what it must be; an id in a path that is not an int64 names nothing (404). Nothing
here lets bad input reach numpy or FAISS, where it could overflow or raise
something that would become a 500. The rules are stricter than pydantic's own
coercions, which would take ``"1.0"``, ``"1_000"``, a non-ASCII digit or a JSON
``true`` as an integer, so each kind of value has a validator of its own.
Unknown query parameters get a 400 on the API (a typo such as ``includeSeen``
must not be silently ignored) and are ignored on HTML pages (browsers and link
trackers add their own).
"""

# No `from __future__ import annotations`: the models' field types are built at
# run time from each app's limits, and pydantic reads them as objects.
import re
from typing import Annotated, Any, Callable, Iterable, Literal, Mapping, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, NotFound

from embedder.checks import error_path, shorten
from search.catalogue import MEMBER_SORTS

INT64_MAX = 2**63 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SORT_KEYS = MEMBER_SORTS
SortKey = Literal[MEMBER_SORTS]  # the catalogue's orders, spelled there once
MAX_MIN_RATINGS = 1_000_000
"""Largest ``min_ratings`` accepted (more than any movie has)."""
MAX_BODY_RATINGS = 1000
"""Most ratings a newcomer's request may carry."""
PAGE_RATINGS = 5
"""Rating rows the newcomer page offers (and the most it takes)."""


class ParamError(BadRequest):
    """A query parameter with a bad value: answered with 400 and the message."""


def parse_id(raw: str, kind: str) -> int:
    """An id from a URL path; anything that is not an int64 names nothing (404)."""
    if _INTEGER.fullmatch(raw) and len(raw) <= 20 and -INT64_MAX <= int(raw) <= INT64_MAX:
        return int(raw)
    raise NotFound(f"unknown {kind} {_shorten(raw)!r}: {kind} ids are integers")


def parse_number(raw: str, name: str) -> float:
    """A finite number given as text (a form field); anything else is a 400."""
    try:
        value = float(raw.strip()) if len(raw) <= 20 else None
    except ValueError:
        value = None
    if value is None or value != value or value in (float("inf"), float("-inf")):
        raise ParamError(f"{name} must be a number, got {_shorten(raw)!r}")
    return value


# --------------------------------------------------------------------------- rules of single values
# Each type below is checked by its own function first, which raises
# _invalid("must ..."); parse() puts the parameter's name (or its path in the body,
# e.g. ratings[0].movie_id) in front. The Field beside it (bounds, description) is
# what the JSON schema states; pydantic checks it again after the function.


def _invalid(message: str) -> PydanticCustomError:
    # The message goes in as a value, so braces in what the client sent are not a template.
    return PydanticCustomError("invalid", "{message}", {"message": message})


def _rule(kind: Any, check: Callable[[Any], Any], **field: Any) -> Any:
    """The type ``kind``, checked by ``check`` before pydantic checks ``Field(**field)``."""
    return Annotated[kind, Field(**field), BeforeValidator(check)]


def _text_integer(low: int, high: int, description: str) -> Any:
    """An integer query parameter from ``low`` to ``high``."""
    rule = f"must be an integer from {low} to {high}, got"

    def check(raw: str) -> int:
        text = raw.strip()
        if not _INTEGER.fullmatch(text):
            raise _invalid(f"{rule} {_shorten(text)!r}")
        # A very long digit string is out of range whatever it says; never int() it
        # (Python refuses over 4300 digits, and nothing here needs that many).
        if len(text) > 20 or not low <= int(text) <= high:
            raise _invalid(f"{rule} {_shorten(text)}")
        return int(text)

    return _rule(int, check, ge=low, le=high, description=description)


MinRatings = _text_integer(
    0, MAX_MIN_RATINGS, "only movies with at least this many training ratings (0: all); a floor keeps obscure movies with a few lucky ratings out"
)


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise _invalid(f"must be true, false, 1 or 0, got {_shorten(raw)!r}")


Flag = _rule(bool, _flag)


def _sort(raw: str) -> str:
    if raw not in SORT_KEYS:
        raise _invalid(f"must be one of {', '.join(SORT_KEYS)}, got {_shorten(raw)!r}")
    return raw


Sort = _rule(SortKey, _sort, description="order of the movies: popularity (most rated first), title, or rating (highest mean first)")


def _title_query(max_length: int, description: str) -> Any:
    """Text to look for in titles, stripped."""

    def check(raw: str) -> str:
        if len(raw) > max_length:
            raise _invalid(f"must be at most {max_length} characters, got {len(raw)}")
        if _CONTROL.search(raw):  # e.g. %00, which no title holds and which would match the search's separators
            raise _invalid("must not contain control characters")
        return raw.strip()

    return _rule(str, check, max_length=max_length, description=description)


def _page_rows(values: list[str]) -> list[str]:
    if len(values) > PAGE_RATINGS:
        raise _invalid(f"must be given at most {PAGE_RATINGS} times, got {len(values)}")
    return values


PageRows = _rule(list[str], _page_rows)


def _json_integer(low: int, high: int, description: str, what: str | None = None) -> Any:
    """A JSON integer from ``low`` to ``high`` (a bool, a float or a string is not one);
    ``what`` names it in the message (default: the range)."""
    rule = f"must be {what or f'an integer from {low} to {high}'}, got"

    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _invalid(f"{rule} {_shorten(repr(value))}")
        return value

    return _rule(int, check, ge=low, le=high, description=description)


MovieId = _json_integer(-INT64_MAX, INT64_MAX, "MovieLens movie id", what="an integer")


def _json_number(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _invalid(f"must be a number, got {_shorten(repr(value))}")
    return float(value)  # NaN and infinity pass: the recommender refuses them with the rating scale


RatingValue = _rule(float, _json_number, description="within the bundle's rating scale")


# --------------------------------------------------------------------------- models


class Query(BaseModel):
    """The query parameters of a route; this base takes none.

    Unknown names are ignored here, as the pages want; the API refuses them
    first (:func:`reject_unknown`), before the path's id is looked at.
    """

    model_config = ConfigDict(frozen=True)


class Rating(BaseModel):
    """One rating in a newcomer's body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    movie_id: MovieId
    rating: RatingValue

    @model_validator(mode="before")
    @classmethod
    def _exact_fields(cls, value: Any) -> Any:
        if not isinstance(value, dict) or value.keys() != cls.model_fields.keys():
            raise _invalid('must be an object with exactly "movie_id" and "rating"')
        return value


class Requests:
    """The request models of one app state, with its limits written in.

    Built once per loaded bundle (``offset`` goes up to its number of movies).
    Each API route has an attribute named like its view: the model of its query
    parameters (:class:`Query` for a route without any). ``newcomer_body`` is the
    body of ``POST /recommendations``; ``search_page`` and ``newcomer_page`` are
    what those two pages take.
    """

    def __init__(self, *, k_default: int, k_max: int, search_default: int, search_max: int, max_query: int, n_movies: int):
        K = _text_integer(1, k_max, "how many answers")
        QueryText = _title_query(max_query, "the text to look for in movie titles")
        Limit = _text_integer(1, search_max, "most answers")
        Offset = _text_integer(0, n_movies, "matches to skip, for the next page")
        BodyK = _json_integer(1, k_max, "how many answers")

        class Recommendations(Query):
            k: K = k_default
            include_seen: Annotated[Flag, Field(description="also recommend movies the user rated in training: true, false, 1 or 0")] = False
            min_ratings: MinRatings = 0

        class Similar(Query):
            k: K = k_default
            min_ratings: MinRatings = 0

        class Search(Query):
            q: QueryText
            limit: Limit = search_default
            offset: Offset = 0

        class SearchPage(Search):
            q: QueryText = ""  # the page without a query shows the empty search box

        class Cluster(Query):
            sort: Sort = "popularity"

        class NewcomerPage(Query):
            title: PageRows = []
            rating: PageRows = []
            k: K = k_default

        class NewcomerBody(BaseModel):
            """A newcomer's ratings, and how many answers they want."""

            model_config = ConfigDict(extra="forbid", frozen=True)

            ratings: Annotated[list[Rating], Field(max_length=MAX_BODY_RATINGS, description="each movie once")]
            k: BodyK = k_default

            @model_validator(mode="before")
            @classmethod
            def _shape(cls, body: Any) -> Any:
                # Whole-body messages, so they name the fields themselves.
                if not isinstance(body, dict):
                    raise _invalid('the body must be a JSON object such as {"ratings": [{"movie_id": 1, "rating": 5}], "k": 10}')
                unknown = sorted(body.keys() - cls.model_fields.keys())
                if unknown:
                    raise _invalid(f"unknown field(s) {_names(unknown)}; the body takes {' and '.join(cls.model_fields)}")
                if not isinstance(body.get("ratings"), list) or len(body["ratings"]) > MAX_BODY_RATINGS:
                    raise _invalid(f'ratings must be a list of at most {MAX_BODY_RATINGS} objects {{"movie_id": int, "rating": number}}')
                return body

        # The API routes' query parameters, by view name.
        self.recommendations = Recommendations
        self.similar = Similar
        self.search = Search
        self.cluster = Cluster
        self.movie = self.clusters = self.model = self.healthz = self.newcomer_recommendations = Query
        # The newcomer's body, and what two pages take.
        self.newcomer_body = NewcomerBody
        self.search_page = SearchPage
        self.newcomer_page = NewcomerPage


# --------------------------------------------------------------------------- checking

_Model = TypeVar("_Model", bound=BaseModel)


def parse(model: type[_Model], values: Any) -> _Model:
    """``values`` (a request's query arguments, or its JSON body) checked by ``model``;
    :class:`ParamError` naming the first bad parameter otherwise.

    Of a repeated query parameter the first value counts (as ``args.get`` gives);
    a field that takes them all is given its list by the caller.
    """
    if isinstance(values, MultiDict):
        values = values.to_dict()
    try:
        return model.model_validate(values)
    except ValidationError as err:
        error = err.errors(include_url=False)[0]
    path = error_path(error["loc"])
    if error["type"] == "missing":  # a query field without a default, such as q (the body's are checked before)
        raise ParamError(f"{path} is required: {model.model_fields[path].description}")
    raise ParamError(f"{path} {error['msg']}" if path else error["msg"])


def reject_unknown(args: Mapping[str, str], model: type[Query]) -> None:
    """400 for query parameters that ``model`` does not declare (API only)."""
    fields = model.model_fields
    if args.keys() <= fields.keys():  # the usual case, without building a set
        return
    takes = ", ".join(fields) or "no query parameters"
    raise ParamError(f"unknown query parameter(s) {_names(sorted(args.keys() - fields.keys()))}; this route takes {takes}")


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(_shorten(name)) for name in names)


def _shorten(text: str) -> str:
    return shorten(text, mark="...")
