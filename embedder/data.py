"""MovieLens ratings from any release layout, checked once, and the canonical train/test split.

Readers only turn files into frames indexed by line; :func:`build_ratings` checks them, so every layout
fails the same way, naming the file and the line (blank lines are skipped, and not counted).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import os
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from embedder.checks import shorten

log = logging.getLogger("embedder.data")

#: Values of :attr:`RatingsData.name`.
DATASET_NAMES = tuple("ml-100k ml-1m ml-10m ml-20m ml-25m ml-32m ml-latest-small ml-latest csv".split())
#: Documented rating scales of the releases; a plain CSV takes its scale from its data.
RATING_SCALES = {"ml-100k": (1.0, 5.0), "ml-1m": (1.0, 5.0)} | dict.fromkeys(DATASET_NAMES[2:-1], (0.5, 5.0))
#: Genre flag columns of ``u.item``, in file order.
ML100K_GENRES = tuple(
    "unknown|Action|Adventure|Animation|Children's|Comedy|Crime|Documentary|Drama|Fantasy|Film-Noir|Horror|"
    "Musical|Mystery|Romance|Sci-Fi|Thriller|War|Western".split("|")
)
CACHE_ENV = "MOVIE_EMBEDDINGS_CACHE"
#: Columns of :attr:`RatingsData.ratings` in order, and their dtypes (ids int64 when int32 cannot hold one).
RATING_COLUMNS = ("user_id", "movie_id", "rating", "timestamp")
COMPACT_DTYPES = dict(zip(RATING_COLUMNS, ("int32", "int32", "float32", "int64")))
MOVIE_DTYPES = {"movie_id": "int64", "title": str, "genres": str}
#: Most bytes inflated from one zip member, whatever it declares: room to spare for ML-32M's ratings.csv.
MAX_MEMBER_BYTES = 4 << 30
_ALIASES = {"user_id": ("user_id", "userId", "user"), "movie_id": ("movie_id", "movieId", "movie", "item")}
_ALIASES |= {"rating": ("rating",), "timestamp": ("timestamp",)}
_MOVIE_COLUMNS = {"movie_id": ("movieId", "movie_id"), "title": ("title",), "genres": ("genres",)}
_U_ITEM_COLUMNS = ["movie_id", "title", "release", "video_release", "url", *ML100K_GENRES]
_LAYOUTS = {  # ratings file: movies file, releases, how pandas reads the movies file
    "u.data": ("u.item", "ml-100k", dict(sep="|", header=None, names=_U_ITEM_COLUMNS, encoding="latin-1")),
    "ratings.dat": ("movies.dat", "ml-1m, ml-10m", dict(sep="\t", header=None, names=list(_MOVIE_COLUMNS))),
    "ratings.csv": ("movies.csv", "ml-20m, ml-25m, ml-32m, ml-latest(-small)", {}),
}
_CHECKSUM_BLOCK = 1 << 20
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


class DataError(ValueError):
    """Bad input data; the message names the file and, where it applies, the line."""


@dataclass(frozen=True)
class RatingsData:
    """``ratings``: :data:`COMPACT_DTYPES` (``timestamp`` 0 if none) in file order, the last of each (user,
    movie) pair kept; ``movies``: :data:`MOVIE_DTYPES`, then ``Movie <id>`` for each rated id not listed."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    name: str  # one of DATASET_NAMES
    source: str
    checksum: str
    rating_scale: tuple[float, float]
    duplicates_dropped: int = 0


def default_cache_dir() -> Path:
    """Return the cache folder: ``$MOVIE_EMBEDDINGS_CACHE`` if set, else ``~/.cache/movie-embeddings``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "movie-embeddings").expanduser()


def ratings_checksum(ratings: pd.DataFrame) -> str:
    """sha256 of the rows ``(user_id, movie_id, timestamp)`` as little-endian int64, then of ``rating`` as
    little-endian float64: values and order only, so ML-100K hashes the same from every source."""
    digest, blocks = hashlib.sha256(), range(0, len(ratings), _CHECKSUM_BLOCK)
    columns = [ratings[c].to_numpy() for c in ("user_id", "movie_id", "timestamp")]
    for start in blocks:
        digest.update(np.column_stack([c[start : start + _CHECKSUM_BLOCK] for c in columns]).astype("<i8"))
    for start in blocks:
        digest.update(ratings["rating"].to_numpy()[start : start + _CHECKSUM_BLOCK].astype("<f8"))
    return digest.hexdigest()


def load_ratings(
    data: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> RatingsData:
    """Load MovieLens: ``None``/``"ml-100k"`` fetched (cached in ``cache_dir``), else a release folder or zip,
    or a CSV of ``user_id, movie_id, rating[, timestamp]``; DataError names what is wrong, and where."""
    if data is None or data == "ml-100k":
        from embedder.fetch import load_default  # fetch reads its zips with this module's readers

        return load_default(Path(cache_dir) if cache_dir else default_cache_dir(), progress=progress)
    path = Path(data).expanduser()
    word = isinstance(data, str) and "/" not in data and os.sep not in data and not path.suffix
    if data in DATASET_NAMES or word and not path.exists():  # a bare word: more likely a mistyped name
        raise DataError(
            f"unknown dataset name {data!r}: the only name accepted is 'ml-100k' (the default, fetched); "
            f"for {', '.join(DATASET_NAMES[1:-1])} or a CSV file, pass the path of a local copy"
        )
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir() or path.is_file() and (path.suffix.lower() == ".zip" or zipfile.is_zipfile(path)):
        with Release(path) as release:
            return release.load()
    if not path.is_file():  # a FIFO or a device would block, or never end
        raise DataError(f"{path}: not a regular file, a folder or a zip")
    return build_ratings("csv", None, read_ratings(lambda: open(path, "rb"), str(path)), str(path), str(path))


class Release(contextlib.AbstractContextManager):
    """The files of a release in a folder or a zip, at its root or one folder down."""

    def __init__(self, path: Path):
        self.path, self.prefix, self.zip = path, "", None
        if path.is_dir():
            found = [*path.glob("*"), *path.glob("*/*")]
            self.names = [p.relative_to(path).as_posix() for p in found if p.is_file()]
            return
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{path}: not a readable zip file ({exc})") from None
        self.names = [n for n in self.zip.namelist() if n.count("/") <= 1 and not n.endswith("/")]

    def __exit__(self, *exc_info) -> None:
        self.zip and self.zip.close()

    def label(self, name: str) -> str:
        """The file for messages: its path, or ``member in archive.zip``."""
        return f"{self.prefix}{name} in {self.path}" if self.zip else str(self.path / (self.prefix + name))

    def open(self, name: str) -> IO:
        """Open one file: a .dat file as text with each '::' a tab, for pandas' C engine (UTF-8 from ml-10m
        on, else latin-1); a zip member only when deflated and within :data:`MAX_MEMBER_BYTES`."""
        if self.zip is None:
            fh = open(self.path / (self.prefix + name), "rb")
        elif (member := self.prefix + name) not in self.zip.namelist():
            raise DataError(f"{self.path}: no member {member}")
        elif (info := self.zip.getinfo(member)).compress_type not in _ZIP_METHODS:
            # zipfile inflates bzip2 and lzma a whole read at a time, past any cap; MovieLens zips deflate.
            raise DataError(f"{self.label(name)}: compression method {info.compress_type}, not deflate")
        elif info.file_size > MAX_MEMBER_BYTES:  # zipfile inflates no more than declared, then checks the CRC
            limit = f"over the {MAX_MEMBER_BYTES:,}-byte limit for a zip member"
            raise DataError(f"{self.label(name)}: {info.file_size:,} bytes uncompressed, {limit}")
        else:
            fh = self.zip.open(info)
        if not name.endswith(".dat"):
            return fh
        with fh:
            data = fh.read().replace(b"::", b"\t")
        try:
            return io.StringIO(data.decode("utf-8"))
        except UnicodeDecodeError:
            return io.StringIO(data.decode("latin-1"))

    def load(self, source: str | None = None) -> RatingsData:
        """Read the release, its layout known by its ratings file; DataError when none is, or data is bad."""
        for ratings_file, (movies_file, _, movie_format) in _LAYOUTS.items():
            if hits := sorted((n for n in self.names if n.rsplit("/", 1)[-1] == ratings_file), key=len):
                break
        else:
            looked_for = "; ".join(f"{r} + {m} ({releases})" for r, (m, releases, _) in _LAYOUTS.items())
            found = ", ".join(sorted(self.names)[:10]) or "nothing"
            raise DataError(f"{self.path}: no MovieLens files found; looked for {looked_for}; found {found}")
        self.prefix, header = hits[0][: -len(ratings_file)], ratings_file == "ratings.csv"
        label, movies_label = self.label(ratings_file), self.label(movies_file)
        ratings = read_ratings(lambda: self.open(ratings_file), label, header, "," if header else "\t")
        folder, movies = (self.prefix.rstrip("/") or self.path.stem).lower(), None
        if ratings_file == "u.data":
            name = "ml-100k"
        elif ratings_file == "ratings.dat":
            half_stars = (pd.to_numeric(ratings["rating"], errors="coerce") % 1 > 0).any()
            name = "ml-10m" if half_stars or "10m" in folder else "ml-1m"
        else:
            m = re.search(r"ml-(20m|25m|32m|latest-small|latest)(?![a-z0-9-])", folder)
            name = f"ml-{m[1]}" if m else "ml-latest"
        if self.prefix + movies_file in self.names:
            movies = _read_csv(lambda: self.open(movies_file), movies_label, dtype=str, **movie_format)
            if "Western" in movies:  # u.item: genre flags
                movies["genres"] = genres_from_flags(movies)
            columns = _pick_columns(movies.columns, _MOVIE_COLUMNS, movies_label)
            movies = movies[list(columns)].rename(columns=columns)
        else:
            log.warning("%s: no %s; movies are titled 'Movie <id>'", self.path, movies_file)
        source = source or str(self.path)
        return build_ratings(name, RATING_SCALES[name], ratings, label, source, movies, movies_label)


def _read_csv(open_: Callable[[], IO], label: str, dtype=None, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` of what ``open_`` opens, as ``dtype`` if it can, indexed by line number (blank
    lines skipped, and not counted); errors name the file."""
    # Header-less MovieLens files never quote (u.item's titles hold '"'); the CSVs quote titles with a ','.
    kwargs.setdefault("quoting", csv.QUOTE_NONE if kwargs.get("header", 0) is None else csv.QUOTE_MINIMAL)
    kwargs.setdefault("keep_default_na", dtype is not str)  # a title such as 'NA' stays one
    try:
        try:
            with open_() as fh:
                frame = pd.read_csv(fh, dtype=dtype, **kwargs)
        except (ValueError, OverflowError):
            if not isinstance(dtype, dict):
                raise
            with open_() as fh:  # pandas does not say where a value did not fit: read untyped, for the checks
                frame = pd.read_csv(fh, low_memory=False, **kwargs)
    except DataError:
        raise
    except (ValueError, zipfile.BadZipFile, zlib.error, EOFError) as exc:  # pandas' parse errors included
        raise DataError(f"{label}: {' '.join(str(exc).split())}") from None
    frame.index += 1 if kwargs.get("header", 0) is None else 2
    return frame


def read_ratings(open_: Callable[[], IO], label: str, header: bool = True, sep: str = ",") -> pd.DataFrame:
    """The ratings columns of a file, as :data:`RATING_COLUMNS` (a header names them, and may lack the
    timestamp).  latin-1 decodes any byte, so junk reaches the checks and its line."""
    kwargs: dict = dict(sep=sep, encoding="latin-1")
    if header:
        names = _pick_columns(_read_csv(open_, label, nrows=0, **kwargs).columns, _ALIASES, label)
        kwargs["usecols"] = list(names)
    else:
        names, kwargs["header"] = dict(enumerate(RATING_COLUMNS)), None
    ratings = _read_csv(open_, label, {k: COMPACT_DTYPES[v] for k, v in names.items()}, **kwargs)
    if (fields := ratings.shape[1]) != len(names):
        raise DataError(f"{label}, line 1: expected 4 fields (user movie rating timestamp), found {fields}")
    return ratings.rename(columns=names)


def _pick_columns(found: pd.Index, aliases: dict, label: str) -> dict:
    """``{header: canonical name}`` of the header names in ``aliases``, or DataError naming what was found."""
    lower, chosen = {str(c).strip().lower(): c for c in found}, {}
    for name, accepted in aliases.items():
        if hits := [lower[a.lower()] for a in accepted if a.lower() in lower]:
            chosen[hits[0]] = name
    if set(aliases) - {"timestamp"} - set(chosen.values()):
        expected = ", ".join(a[0] + " (optional)" * (n == "timestamp") for n, a in aliases.items())
        found_text = ", ".join(map(str, found)) or "none"
        raise DataError(f"{label}, line 1: expected columns {expected}; found {found_text}")
    return chosen


def build_ratings(
    name: str, scale: tuple | None, raw: pd.DataFrame, label: str, source: str, movies=None, movies_label=""
) -> RatingsData:
    """Check what a reader read (frames indexed by line number) into :class:`RatingsData` (``scale`` None:
    from the data); DataError at the first bad value, naming file, line and value."""
    if raw.empty:
        raise DataError(f"{label}: no ratings (the file is empty or has only a header)")
    # MovieLens numbers users and movies from 1; a plain CSV may use any integer.
    users, items = (_ids(raw[c], c, label, non_negative=name != "csv") for c in ("user_id", "movie_id"))
    rating = raw["rating"].to_numpy() if raw["rating"].dtype == np.float32 else _numbers(raw["rating"])
    _refuse(~np.isfinite(rating), raw["rating"], "rating", label, "is not a number")
    low, high = scale or (float(rating.min()), float(rating.max()))
    if scale is None and low == high and len(rating) > 1:  # one rating: the split says "too few"
        raise DataError(f"{label}: every rating is {low:g}, so there is nothing to learn")
    outside = f"is outside the {name} rating scale {low:g}..{high:g}"
    _refuse((rating < low) | (rating > high), raw["rating"], "rating", label, outside)
    stamps = (
        _ids(raw["timestamp"], "timestamp", label) if "timestamp" in raw else np.zeros(len(raw), np.int64)
    )
    narrow = lambda ids: (
        ids.astype(np.int32, copy=False) if -(2**31) <= ids.min() and ids.max() < 2**31 else ids
    )
    columns = [narrow(users), narrow(items), rating.astype(np.float32, copy=False), stamps]
    ratings = pd.DataFrame(dict(zip(RATING_COLUMNS, columns)), copy=False)
    dup = _duplicated(columns[0], columns[1])
    if dropped := int(dup.sum()):
        first = f"{label}, line {raw.index[np.argmax(dup)]}"
        log.warning("%s: dropped %d duplicate (user, movie) ratings, the last of each kept", first, dropped)
        ratings = ratings[~dup].reset_index(drop=True)
    movies = _movies(movies, movies_label, ratings["movie_id"].to_numpy())
    return RatingsData(ratings, movies, name, source, ratings_checksum(ratings), (low, high), dropped)


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy("float64", na_value=np.nan)


def _ids(values: pd.Series, what: str, label: str, non_negative: bool = False) -> np.ndarray:
    """A column of integers as read, or DataError at the first value that is not an integer that fits."""
    numbers = values.to_numpy() if pd.api.types.is_signed_integer_dtype(values.dtype) else _numbers(values)
    if numbers.dtype == np.float64:  # floats, text, or ids past int64: exact as floats below 2**53 only
        if (bad := ~(numbers % 1 == 0) | (np.abs(numbers) >= 2**53)).any():
            value = values.iloc[pos := int(np.argmax(bad))]
            integral = numbers[pos] % 1 == 0 or re.fullmatch(r"\s*[+-]?\d+\s*", str(value))
            out_of_range = "is out of range (must fit a signed 64-bit integer)"
            _refuse(bad, values, what, label, out_of_range if integral else "is not an integer")
        numbers = numbers.astype(np.int64)
    if non_negative:
        _refuse(numbers < 0, values, what, label, "is negative (MovieLens ids are non-negative)")
    return numbers


def _refuse(bad: np.ndarray, values: pd.Series, what: str, label: str, problem: str) -> None:
    """DataError at the first ``bad`` row, naming its line and its value (cut to 40 characters)."""
    if bad.any():
        value, where = values.iloc[pos := int(np.argmax(bad))], f"{label}, line {values.index[pos]}"
        if pd.isna(value):
            raise DataError(f"{where}: missing {what} (empty or NaN)")
        shown = shorten(f"{value:g}" if isinstance(value, (float, np.floating)) else str(value))
        raise DataError(f"{where}: {what} {repr(shown) if isinstance(value, str) else shown} {problem}")


def genres_from_flags(flags: pd.DataFrame) -> pd.Series:
    """``'|'``-joined names of the genres flagged 1 in :data:`ML100K_GENRES` columns; 'unknown' means none."""
    genres = list(ML100K_GENRES[1:])
    return (flags[genres].astype(str) == "1").dot(pd.Index(genres) + "|").str.rstrip("|")


def _duplicated(users: np.ndarray, movies: np.ndarray) -> np.ndarray:
    """Whether each (user, movie) pair comes again later. Ids of 32 bits are packed in one int64 key, which
    hashes in a third of the time of two columns (benchmarks/README.md, "Training at real sizes")."""
    if users.dtype == movies.dtype == np.int32:
        key = (users.astype(np.int64) << 32) | (movies.astype(np.int64) & 0xFFFFFFFF)
        return pd.Series(key).duplicated(keep="last").to_numpy()
    return pd.DataFrame({"u": users, "m": movies}).duplicated(keep="last").to_numpy()


def _movies(raw: pd.DataFrame | None, label: str, rated: np.ndarray) -> pd.DataFrame:
    """The movie table checked, then a ``Movie <id>`` row for each rated id it lacks."""
    table = None
    if raw is not None:
        ids = _ids((raw := raw.dropna(how="all"))["movie_id"], "movie_id", label)
        _refuse(pd.Series(ids).duplicated().to_numpy(), raw["movie_id"], "movie_id", label, "appears twice")
        genres = raw["genres"].fillna("").astype(str).str.strip().replace("(no genres listed)", "")
        table = pd.DataFrame({"movie_id": ids, "title": raw["title"].fillna(""), "genres": genres})
    missing = np.setdiff1d(pd.unique(rated), [] if table is None else table["movie_id"])
    if len(missing) and table is not None:  # without a movie file, placeholders are expected, not news
        log.warning("%s: %d rated movie id(s) not in it, e.g. %d", label, len(missing), missing[0])
    placeholders = pd.DataFrame({"movie_id": missing, "title": [f"Movie {m}" for m in missing], "genres": ""})
    return pd.concat([table, placeholders], ignore_index=True).astype(MOVIE_DTYPES)


def canonical_split(ratings: pd.DataFrame, *, source: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``train_test_split(test_size=0.2, random_state=42)`` of the rows: every reported figure uses it.
    DataError, naming ``source``, when a part would be empty."""
    return _split(ratings, 0.2, 42, "the train/test split", source)


def validation_split(train: pd.DataFrame, fraction: float, seed: int, *, source: str | None = None) -> tuple:
    """Carve a validation part out of the training rows (for early stopping only), as ``train_test_split``."""
    return _split(train, fraction, seed, "the validation split of the training ratings", source)


def _split(frame: pd.DataFrame, test_size: float, seed: int, what: str, source: str | None) -> tuple:
    try:
        first, second = train_test_split(np.arange(len(frame)), test_size=test_size, random_state=seed)
    except ValueError as exc:  # a part would be empty
        where = f"{source}: " if source else ""
        too_few = f"{len(frame)} rating(s) are too few for {what} ({test_size:g} held out)"
        raise DataError(f"{where}{too_few}: {exc}") from None
    return frame.take(first), frame.take(second)
