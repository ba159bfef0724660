"""Local MovieLens releases by path: a folder or a zip, detected by its file names.

One parser per layout (ml-100k, ml-1m/10m ``::`` files, ml-20m+ CSVs, a plain CSV);
each hands unchecked frames to :func:`embedder.ratings.build_ratings`.

Zip members are size-capped (:data:`MAX_MEMBER_BYTES`, :data:`MAX_COMPRESSION_RATIO`)
before they are read, and readers skip blank lines, so a small hostile file cannot
turn into gigabytes of memory.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from embedder.ratings import (
    ML100K_GENRES,
    RATING_COLUMNS,
    RATING_SCALES,
    DataError,
    RatingsData,
    RawRatings,
    Source,
    build_ratings,
)

log = logging.getLogger("embedder.data")


# --------------------------------------------------------------------------- #
# Files: a folder or a zip, and a read_csv that reports file and line.
# --------------------------------------------------------------------------- #


#: Largest zip member read, uncompressed: room to spare for the largest MovieLens ratings.csv.
MAX_MEMBER_BYTES = 4 << 30
#: Largest uncompressed/compressed ratio of a zip member above :data:`_RATIO_FLOOR_BYTES`.
#: Far above what MovieLens CSVs deflate by, far below what a zip bomb of blank lines does.
MAX_COMPRESSION_RATIO = 100
# Small members are never refused by their ratio: they cannot hurt, and tiny files deflate oddly.
_RATIO_FLOOR_BYTES = 1 << 20


def check_zip_member(info: zipfile.ZipInfo, label: str) -> None:
    """Refuse a zip member too large, or too compressed, to be an honest ratings file.

    The sizes in the zip's directory bound what reading yields: :mod:`zipfile` stops at
    the declared size and fails the CRC if the data claims otherwise.

    Args:
        info: The member's directory entry.
        label: The member, for the message.

    Raises:
        DataError: Uncompressed size above :data:`MAX_MEMBER_BYTES`, or a ratio above
            :data:`MAX_COMPRESSION_RATIO`.
    """
    size = info.file_size
    if size > MAX_MEMBER_BYTES:
        raise DataError(
            f"{label}: {size:,} bytes uncompressed, over the {MAX_MEMBER_BYTES:,}-byte limit for a zip member"
        )
    if size > _RATIO_FLOOR_BYTES and size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        raise DataError(
            f"{label}: compressed {size // max(info.compress_size, 1):,}:1 "
            f"({info.compress_size:,} -> {size:,} bytes), over the {MAX_COMPRESSION_RATIO}:1 limit "
            f"for a zip member; not a MovieLens file"
        )


@dataclass
class ReleaseFiles:
    """The files of one release, in a folder or in a zip (at its root or in one top folder)."""

    path: Path  # the folder or the .zip
    names: frozenset[str]  # file names directly in the release folder
    folder: str  # the release folder's name, used to tell ml-1m from ml-10m, ml-20m from ml-25m...
    archive: zipfile.ZipFile | None = None
    prefix: str = ""  # the top folder inside the zip, with a trailing '/'

    def open(self, name: str) -> IO[bytes]:
        """Open one file of the release for reading bytes; zip members are size-checked first."""
        if self.archive is not None:
            info = self.archive.getinfo(self.prefix + name)
            check_zip_member(info, self.label(name))
            return self.archive.open(info)
        base = self.path / self.prefix if self.prefix else self.path
        return open(base / name, "rb")

    def read_bytes(self, name: str) -> bytes:
        """The whole content of one file of the release."""
        with self.open(name) as fh:
            return fh.read()

    def label(self, name: str) -> str:
        """The file for messages: its path, or ``member in archive.zip``."""
        if self.archive is not None:
            return f"{self.prefix}{name} in {self.path}"
        return str(self.path / self.prefix / name if self.prefix else self.path / name)


def _is_junk(name: str) -> bool:
    return name.startswith(("__MACOSX", ".")) or "/." in name


@contextmanager
def open_release(path: Path) -> Iterator[ReleaseFiles]:
    """Yield the release files under ``path`` (a folder or a .zip), descending into one lone top folder.

    Raises:
        DataError: ``path`` is neither a folder nor a readable zip.
    """
    if path.is_dir():
        entries = [p for p in path.iterdir() if not _is_junk(p.name)]
        files = frozenset(p.name for p in entries if p.is_file())
        dirs = [p for p in entries if p.is_dir()]
        if not files & _MARKERS and len(dirs) == 1:
            inner = dirs[0]
            files = frozenset(p.name for p in inner.iterdir() if p.is_file())
            yield ReleaseFiles(path, files, inner.name, prefix=inner.name + "/")
        else:
            yield ReleaseFiles(path, files, path.name)
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
            yield ReleaseFiles(path, inner, prefix[:-1], archive, prefix)
        else:
            yield ReleaseFiles(path, root_files, path.stem, archive)


def _read_csv(
    fh: IO[bytes] | IO[str],
    label: str,
    **kwargs,
) -> pd.DataFrame:
    """``pd.read_csv`` (C engine) with its errors turned into DataError naming file and line.

    Blank lines are skipped: kept, each would cost a row of NaNs (so a zip of blank
    lines could fill the memory).  :class:`Source` finds a row's line when a
    message needs it.
    """
    try:
        with warnings.catch_warnings():
            # Mixed types in a chunk mean bad values; the validation names the line.
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            return pd.read_csv(fh, engine="c", skip_blank_lines=True, **kwargs)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(f"{label}: corrupt zip member ({exc})") from None
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


def _read_typed_csv(
    reopen: Callable[[], IO[bytes]],
    label: str,
    columns: dict[str, tuple[str, ...]] | dict[int, str],
    **kwargs,
) -> pd.DataFrame:
    """Read a ratings file with explicit compact dtypes, falling back to inferred ones.

    Typed, a 25M-row file is read straight into int32 ids, float32 ratings and int64
    timestamps; ids past int32 are read again as int64.  A value that fits neither
    (text, a blank field, an id past int64) makes pandas raise without saying where;
    the file is then read untyped, so the validation can name the line and the value.

    Args:
        reopen: Opens the file for reading bytes (each attempt reads it afresh).
        label: The file, for messages.
        columns: Canonical column name -> accepted header names, or column
            position -> canonical name for header-less files.
        kwargs: Passed on to ``pd.read_csv``.
    """
    for ids in ("int32", "int64"):
        try:
            with reopen() as fh, warnings.catch_warnings():
                warnings.simplefilter("ignore", pd.errors.DtypeWarning)
                return pd.read_csv(fh, engine="c", skip_blank_lines=True,
                                   dtype=_typed(columns, ids), **kwargs)
        except (ValueError, OverflowError, zipfile.BadZipFile, zlib.error, EOFError):
            # ParserError and UnicodeDecodeError are ValueErrors too: the last read reports them.
            continue
    with reopen() as fh:
        return _read_csv(fh, label, **kwargs)


def _typed(columns: dict[str, tuple[str, ...]] | dict[int, str], ids: str) -> dict:
    """The read_csv dtype of each accepted header name (or position) of a ratings file."""
    kinds = {"user_id": ids, "movie_id": ids, "rating": "float32", "timestamp": "int64"}
    out: dict = {}
    for key, value in columns.items():
        if isinstance(value, tuple):
            out.update({alias: kinds[key] for alias in value})
        else:
            out[key] = kinds[value]
    return out


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


def parse_ml100k(files: ReleaseFiles) -> RawRatings:
    """ml-100k: ``u.data`` (tab-separated user item rating timestamp) and ``u.item``.

    Returns:
        Unchecked frames, for :func:`embedder.ratings.build_ratings`.
    """
    label = files.label("u.data")
    reopen = lambda: files.open("u.data")  # noqa: E731
    df = _read_rating_lines(reopen, label, "4 tab-separated fields (user item rating timestamp)")
    raw = RawRatings("ml-100k", RATING_SCALES["ml-100k"], df, Source(label, reopen=reopen))
    if "u.item" in files.names:
        raw.movies, raw.movies_src = _parse_u_item(lambda: files.open("u.item"), files.label("u.item"))
    return raw


def _read_rating_lines(reopen: Callable[[], IO[bytes]], label: str, layout: str) -> pd.DataFrame:
    """Header-less, tab-separated ``user movie rating timestamp`` lines (u.data, ratings.dat)."""
    # latin-1 decodes any byte, so junk reaches the validation and is reported by line.
    df = _read_typed_csv(reopen, label, dict(enumerate(RATING_COLUMNS)), sep="\t", header=None,
                         encoding="latin-1")
    _check_field_count(df, 4, layout, label)
    return df.set_axis(list(RATING_COLUMNS), axis=1)


def _parse_u_item(reopen: Callable[[], IO[bytes]], label: str) -> tuple[pd.DataFrame, Source]:
    """``u.item``: latin-1, ``id|title|release|video release|url|`` then 19 genre flags."""
    with reopen() as fh:
        df = _read_csv(fh, label, sep="|", header=None, encoding="latin-1", dtype=str,
                       keep_default_na=False, na_values=[""], quoting=csv.QUOTE_NONE)  # titles hold '"'
    _check_field_count(df, 5 + len(ML100K_GENRES), "24 '|'-separated fields", label)
    src = Source(label, reopen=reopen)
    flags = df.iloc[:, 5:].set_axis(list(ML100K_GENRES), axis=1)
    blank = df.isna().all(axis=1)  # blank lines: left for _clean_movies to drop
    genres = genres_from_flags(flags[~blank], src)
    movies = pd.DataFrame({"movie_id": df[0], "title": df[1], "genres": genres}, index=df.index)
    return movies, src


def genres_from_flags(flags: pd.DataFrame, src: Source) -> pd.Series:
    """Join the names of the set 0/1 genre flags; the 'unknown' flag means no genre ('').

    Args:
        flags: One column per name of :data:`ML100K_GENRES`, in that order; the
            index holds the row positions.
        src: The file, for messages.

    Returns:
        The ``'|'``-joined genre names of each row.

    Raises:
        DataError: A flag other than 0 or 1, naming the line.
    """
    values = flags.apply(pd.to_numeric, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isin(values, (0.0, 1.0)).all(axis=1)
    if bad.any():
        pos = int(np.argmax(bad))
        raise DataError(f"{src.at(flags.index[pos])}: genre flags must be 0 or 1")
    names = np.array(ML100K_GENRES, dtype=object)
    mask = values == 1.0
    mask[:, 0] = False  # 'unknown' is the absence of a genre, not a genre
    return pd.Series(["|".join(names[row]) for row in mask], index=flags.index, dtype=object)


def _parse_dat(files: ReleaseFiles) -> RawRatings:
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
    df = _read_rating_lines(partial(io.BytesIO, text), label,
                            "4 '::'-separated fields (UserID::MovieID::Rating::Timestamp)")
    del text  # the whole file's bytes, not needed any more
    # Lines are the same with '::' or tabs: a message rescans the file as it is.
    src = Source(label, reopen=lambda: files.open("ratings.dat"))
    rating = pd.to_numeric(df["rating"], errors="coerce")
    half_stars = bool((rating.notna() & (rating % 1 != 0)).any())
    name = "ml-10m" if half_stars or "10m" in files.folder.lower() else "ml-1m"
    raw = RawRatings(name, RATING_SCALES[name], df, src)
    if "movies.dat" in files.names:
        raw.movies, raw.movies_src = _parse_movies_dat(files.read_bytes("movies.dat"),
                                                       files.label("movies.dat"))
    return raw


def _parse_movies_dat(data: bytes, label: str) -> tuple[pd.DataFrame, Source]:
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
    return movies, Source(label)


_CSV_RELEASE = re.compile(r"ml-(20m|25m|32m|latest-small|latest)(?![a-z0-9-])")


def _parse_csv_release(files: ReleaseFiles) -> RawRatings:
    """ml-20m/25m/32m/latest(-small): ``ratings.csv`` and ``movies.csv`` with headers."""
    m = _CSV_RELEASE.search(files.folder.lower())
    name = f"ml-{m.group(1)}" if m else "ml-latest"
    label = files.label("ratings.csv")
    reopen = lambda: files.open("ratings.csv")  # noqa: E731
    df = _read_typed_csv(reopen, label, _aliases(_RELEASE_RATING_COLUMNS), encoding="latin-1")
    df = _rename_columns(df, label, _RELEASE_RATING_COLUMNS)
    raw = RawRatings(name, RATING_SCALES[name], df, Source(label, first_line=2, reopen=reopen))
    if "movies.csv" in files.names:
        movies_label = files.label("movies.csv")
        text = _decode(files.read_bytes("movies.csv"))
        movies = _read_csv(io.StringIO(text), movies_label, dtype=str,
                           keep_default_na=False, na_values=[""])
        raw.movies = _rename_columns(movies, movies_label, _MOVIE_CSV_COLUMNS)
        raw.movies_src = Source(movies_label, first_line=2, reopen=lambda: io.BytesIO(text.encode()))
    return raw


def _parse_plain_csv(path: Path) -> RawRatings:
    """A CSV with named columns user_id, movie_id, rating and an optional timestamp."""
    label = str(path)
    reopen = lambda: open(path, "rb")  # noqa: E731
    df = _read_typed_csv(reopen, label, _aliases(_PLAIN_RATING_COLUMNS), encoding="latin-1")
    df = _rename_columns(df, label, _PLAIN_RATING_COLUMNS)
    return RawRatings("csv", None, df, Source(label, first_line=2, reopen=reopen))


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


def _aliases(spec: tuple[_Column, ...]) -> dict[str, tuple[str, ...]]:
    return {col.name: col.aliases for col in spec}


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
    parse: Callable[[ReleaseFiles], RawRatings]


_LAYOUTS = (
    _Layout("u.data", "u.item", "ml-100k", parse_ml100k),
    _Layout("ratings.dat", "movies.dat", "ml-1m, ml-10m", _parse_dat),
    _Layout("ratings.csv", "movies.csv", "ml-20m, ml-25m, ml-32m, ml-latest(-small)", _parse_csv_release),
)
_MARKERS = frozenset(layout.ratings_file for layout in _LAYOUTS)


def load_path(path: Path) -> RatingsData:
    """Load a local release folder or zip, or a plain CSV file.

    Args:
        path: An existing folder, .zip, or CSV file.

    Raises:
        DataError: Unrecognised layout, or unreadable or invalid data.
    """
    if path.is_file() and path.suffix.lower() != ".zip" and not zipfile.is_zipfile(path):
        return build_ratings(_parse_plain_csv(path), source=str(path))
    with open_release(path) as files:
        for layout in _LAYOUTS:
            if layout.ratings_file in files.names:
                raw = layout.parse(files)
                if raw.movies is None:
                    log.warning("%s: no %s; movies are titled 'Movie <id>'", path, layout.movies_file)
                return build_ratings(raw, source=str(path))
    looked_for = "; ".join(f"{x.ratings_file} + {x.movies_file} ({x.releases})" for x in _LAYOUTS)
    found = ", ".join(sorted(files.names)[:10]) or "nothing"
    raise DataError(f"{path}: no MovieLens files found; looked for {looked_for}; found {found}")

