"""The bundle: one folder of ``manifest.json`` + ``.npy`` files, the only thing
passed between the packages.

This module is the single definition of the format. It imports numpy, pandas and
scipy only (never torch), so ``search`` and ``web`` use it to read bundles and to
add their own files without pulling in the training stack.

Writing is atomic: a bundle is assembled in a hidden temporary folder beside its
destination and renamed into place in one step, so a crash never leaves a
half-written bundle where a reader looks. Loading checks the manifest, the schema
version, every file's sha256, dtypes and shapes, and raises :class:`BundleError`
naming the offending file. :mod:`embedder.artifacts` lists and prunes the
versions ``train`` publishes in ``artifacts/bundles/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedder.vocab import Vocabulary

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
MOVIES_FILE = "movies.parquet"
SEEN_FILE = "seen.npz"

# name -> (dtype, number of dimensions); the core arrays every bundle has.
CORE_ARRAYS: dict[str, tuple[str, int]] = {
    "user_embeddings.npy": ("float32", 2),
    "movie_embeddings.npy": ("float32", 2),
    "user_biases.npy": ("float32", 1),
    "movie_biases.npy": ("float32", 1),
    "user_ids.npy": ("int64", 1),
    "movie_ids.npy": ("int64", 1),
}
IMPLICIT_ARRAYS: dict[str, tuple[str, int]] = {
    "implicit_embeddings.npy": ("float32", 2),
    "implicit_biases.npy": ("float32", 1),
}
"""Optional, with a model that has the users' implicit part: per movie, the row
``[E_j, c_j]`` a user's vector gains (scaled by ``|N(u)|^-½``) for having rated
it, in the basis of ``movie_embeddings.npy``. Only fold-in reads them; the
exported user rows already include their implicit part."""
IMPLICIT_EMBEDDINGS, IMPLICIT_BIASES = IMPLICIT_ARRAYS
MOVIE_COLUMNS = ("movie_id", "title", "genres", "rating_count", "mean_rating")

# A file writer takes the path to write to.
FileWriter = Callable[[Path], None]


class BundleError(ValueError):
    """A bundle is missing, corrupt or inconsistent; the message names the file."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def utc_now() -> str:
    """The current UTC time as an ISO-8601 string (seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- writing


def npy_writer(array: np.ndarray) -> FileWriter:
    """A writer that saves ``array`` as a plain (non-object) ``.npy`` file."""
    if array.dtype == object:
        raise BundleError("refusing to write an object array: bundles never hold pickles")

    def write(path: Path) -> None:
        np.save(path, np.ascontiguousarray(array), allow_pickle=False)

    return write


def json_writer(obj: Any) -> FileWriter:
    """A writer that saves ``obj`` as indented JSON."""

    def write(path: Path) -> None:
        path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")

    return write


def bytes_writer(data: bytes) -> FileWriter:
    """A writer that saves raw bytes."""

    def write(path: Path) -> None:
        path.write_bytes(data)

    return write


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _staging_folder(dest: Path) -> Path:
    """A hidden temporary folder beside ``dest`` (same file system, so rename is atomic)."""
    staged = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    staged.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shared
    return staged


def _fill_folder(folder: Path, files: Mapping[str, FileWriter], manifest: dict) -> None:
    """Write every file, then the manifest with their checksums (last, so a folder
    with a manifest is complete)."""
    checksums = dict(manifest.get("files", {}))
    for name, write in files.items():
        target = folder / name
        write(target)
        with open(target, "rb") as handle:
            os.fsync(handle.fileno())
        checksums[name] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}
    manifest = dict(manifest, files=dict(sorted(checksums.items())))
    with open(folder / MANIFEST, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(manifest, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(folder)


def _swap_into_place(staged: Path, dest: Path) -> None:
    """Rename ``staged`` to ``dest``; an existing ``dest`` folder is moved aside
    first and removed only after the new one is in place."""
    if not dest.exists() and not dest.is_symlink():
        os.rename(staged, dest)
    elif dest.is_symlink():
        # Replace a link in one step: make the new link beside it, then rename over.
        raise BundleError(f"{dest}: is a link; write to a real folder or use update_bundle")
    else:
        aside = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(dest, aside)
        os.rename(staged, dest)
        shutil.rmtree(aside, ignore_errors=True)
    _fsync_dir(dest.parent)


def write_bundle(dest: str | os.PathLike, files: Mapping[str, FileWriter], manifest: dict) -> Path:
    """Write a new bundle at ``dest`` atomically.

    Parameters
    ----------
    dest:
        The bundle folder. Its parent is created if needed. An existing bundle
        there is replaced only once the new one is complete.
    files:
        File name -> writer (see :func:`npy_writer`, :func:`json_writer`).
    manifest:
        Manifest fields; ``schema_version``, ``created`` and ``files`` (sha256 and
        size of every file) are filled in here.

    Returns
    -------
    Path
        The bundle folder.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = _staging_folder(dest)
    try:
        base = {"schema_version": SCHEMA_VERSION, "created": utc_now()}
        _fill_folder(staged, files, {**base, **manifest, "files": {}})
        _swap_into_place(staged, dest)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return dest


def update_bundle(
    path: str | os.PathLike,
    files: Mapping[str, FileWriter],
    manifest_updates: Mapping[str, Any],
) -> Path:
    """Add or replace files in an existing bundle, atomically; returns the folder
    that holds the result.

    The bundle is verified first, copied (hard links where possible, since bundle
    files are never modified in place) into a temporary sibling, and the new files
    and manifest fields are written there. Then:

    * ``path`` a link (such as ``artifacts/current``): the copy becomes a new
      version beside the linked folder (``<name>+<UTC stamp>``) and the link is
      moved to it in one step. The old version is left as it was (bundles are
      immutable; ``python -m embedder bundles --keep N`` prunes), so a crash at any
      moment leaves the link on one complete bundle, and a server following the
      link switches to the new version.
    * ``path`` a folder: the copy is renamed over it (the old one moved aside
      first, then removed).
    """
    link = Path(path)
    real = link.resolve()
    bundle = Bundle.load(real)
    dest = real.with_name(f"{real.name.split('+')[0]}+{utc_stamp()}") if link.is_symlink() else real
    staged = _staging_folder(dest)
    try:
        for name in bundle.manifest["files"]:
            if name in files:
                continue
            try:
                os.link(real / name, staged / name)
            except OSError:
                shutil.copy2(real / name, staged / name)
        manifest = {**bundle.manifest, **manifest_updates, "updated": utc_now()}
        _fill_folder(staged, files, manifest)
        _swap_into_place(staged, dest)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if link.is_symlink():
        point_current(link, dest)
    return dest


def utc_stamp() -> str:
    """A UTC time stamp for folder names, to the microsecond."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def point_current(link: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Atomically make the symlink ``link`` point at ``target`` (relative link)."""
    link, target = Path(link), Path(target)
    link.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(target.resolve(), link.parent.resolve())
    temp = link.with_name(f".{link.name}.tmp-{uuid.uuid4().hex[:8]}")
    os.symlink(relative, temp)
    os.replace(temp, link)
    return link


# --------------------------------------------------------------------------- predicting


PREDICT_BLOCK = 1 << 18
"""Pairs predicted at a time by :func:`predict_ratings`."""


def predict_ratings(
    global_mean: float,
    user_embeddings: np.ndarray,
    movie_embeddings: np.ndarray,
    user_biases: np.ndarray,
    movie_biases: np.ndarray,
    user_rows: np.ndarray,
    movie_rows: np.ndarray,
    rating_scale: tuple[float, float] | None,
) -> np.ndarray:
    """``μ + b_u + b_i + p_u·q_i`` in float32 for paired rows, clipped when a scale is given.

    The fallback for an id the model has not learnt: a row of ``-1`` (unknown id)
    contributes a zero embedding and a zero bias, so an unknown user is predicted
    ``μ + b_i``, an unknown movie ``μ + b_u`` and both ``μ``. Users and movies
    with no training ratings are exported with zero rows, so they get exactly this
    fallback from the stored vectors too.
    """
    user_rows = np.asarray(user_rows, dtype=np.int64)
    movie_rows = np.asarray(movie_rows, dtype=np.int64)
    raw = np.empty(len(user_rows), dtype=np.float32)
    # In blocks: the gathered embedding rows of 20M pairs would take gigabytes at once.
    for start in range(0, len(raw), PREDICT_BLOCK):
        block = slice(start, start + PREDICT_BLOCK)
        known_user = user_rows[block] >= 0
        known_movie = movie_rows[block] >= 0
        u = np.where(known_user, user_rows[block], 0)
        m = np.where(known_movie, movie_rows[block], 0)
        dot = np.einsum("ij,ij->i", user_embeddings[u], movie_embeddings[m]) * (known_user & known_movie)
        raw[block] = (
            np.float32(global_mean)
            + user_biases[u] * known_user
            + movie_biases[m] * known_movie
            + dot.astype(np.float32)
        )
    return np.clip(raw, *rating_scale) if rating_scale is not None else raw


# --------------------------------------------------------------------------- reading


def load_npy(path: Path, content: bytes | None = None) -> np.ndarray:
    """Load a ``.npy`` file (or its ``content``, already read) without pickle; errors name the file."""
    try:
        return np.load(path if content is None else io.BytesIO(content), allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err):  # numpy says "Object arrays cannot be loaded when allow_pickle=False"
            raise BundleError(f"{path.name}: cannot be loaded without pickle ({err})") from err
        raise BundleError(f"{path.name}: unreadable .npy file ({err})") from err
    except (OSError, EOFError, MemoryError) as err:  # MemoryError: a header claiming a huge shape
        raise BundleError(f"{path.name}: unreadable .npy file ({err})") from err


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not folder.is_dir():
        aside = sorted(folder.parent.glob(f".{folder.name}.old-*")) if folder.parent.is_dir() else []
        if aside:  # _swap_into_place was interrupted between its two renames
            raise BundleError(f"{folder}: missing; a replacement was interrupted and the previous bundle is at {aside[-1]} (rename it back)")
        raise BundleError(f"{folder}: no bundle folder there (train one with `python -m embedder train`)")
    if not path.is_file():
        raise BundleError(f"{MANIFEST}: missing in {folder}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{MANIFEST}: not valid JSON ({err})") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{MANIFEST}: has no 'files' table")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{MANIFEST}: schema_version {version!r}, this code reads {SCHEMA_VERSION}")
    for name, entry in manifest["files"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise BundleError(f"{MANIFEST}: the entry of {str(name)[:80]!r} must be an object with a 'sha256' string")
    if not finite_number(manifest.get("global_mean")):
        raise BundleError(f"{MANIFEST}: 'global_mean' must be a finite number, got {str(manifest.get('global_mean'))[:40]!r}")
    scale = manifest.get("rating_scale")
    if not (isinstance(scale, list) and len(scale) == 2 and all(map(finite_number, scale)) and scale[0] < scale[1]):
        raise BundleError(f"{MANIFEST}: 'rating_scale' must be [lowest, highest], two numbers, got {str(scale)[:40]}")
    return manifest


def finite_number(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (a bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _verify_checksums(folder: Path, manifest: dict) -> None:
    for name in CORE_ARRAYS.keys() | {MOVIES_FILE, SEEN_FILE}:
        if name not in manifest["files"]:
            raise BundleError(f"{name}: not listed in {MANIFEST}")
    for name, entry in manifest["files"].items():
        path = folder / name
        if Path(name).name != name:
            raise BundleError(f"{name}: file names in {MANIFEST} must be plain names")
        if path.is_symlink():  # a link could point anywhere, e.g. at /etc/passwd
            raise BundleError(f"{name}: is a symbolic link; a bundle holds its own regular files")
        if not path.is_file():
            raise BundleError(f"{name}: missing from {folder}")
        if sha256_file(path) != entry.get("sha256"):
            raise BundleError(f"{name}: checksum mismatch (the file changed after the bundle was written)")


def _check_array(name: str, array: np.ndarray, rows: int | None = None, cols: int | None = None) -> None:
    dtype, ndim = {**CORE_ARRAYS, **IMPLICIT_ARRAYS}[name]
    if array.dtype != np.dtype(dtype) or array.ndim != ndim:
        raise BundleError(f"{name}: expected {dtype} with {ndim} dimension(s), found {array.dtype} {array.shape}")
    if rows is not None and array.shape[0] != rows:
        raise BundleError(f"{name}: has {array.shape[0]} rows, expected {rows}")
    if cols is not None and array.shape[1] != cols:
        raise BundleError(f"{name}: has {array.shape[1]} columns, expected {cols}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BundleError(f"{name}: contains NaN or infinite values")


@dataclass
class Bundle:
    """A loaded, verified bundle.

    Attributes hold the core arrays (row ``r`` of ``user_embeddings`` belongs to
    user ``user_ids[r]``, the original MovieLens id), the movie table, the
    training-ratings matrix ``seen`` (CSR, users x movies) and the manifest.
    """

    path: Path
    manifest: dict
    user_embeddings: np.ndarray
    movie_embeddings: np.ndarray
    user_biases: np.ndarray
    movie_biases: np.ndarray
    user_ids: np.ndarray
    movie_ids: np.ndarray
    movies: pd.DataFrame
    seen: sp.csr_matrix
    _extra: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def global_mean(self) -> float:
        """μ, the global bias of the model."""
        return float(self.manifest["global_mean"])

    @property
    def rating_scale(self) -> tuple[float, float]:
        """(lowest, highest) rating of the dataset; reported predictions are clipped to it."""
        low, high = self.manifest["rating_scale"]
        return float(low), float(high)

    @cached_property
    def user_vocab(self) -> Vocabulary:
        """User id <-> row."""
        return Vocabulary(self.user_ids, "user")

    @cached_property
    def movie_vocab(self) -> Vocabulary:
        """Movie id <-> row."""
        return Vocabulary(self.movie_ids, "movie")

    @property
    def dim(self) -> int:
        """Embedding size d."""
        return int(self.movie_embeddings.shape[1])

    def has(self, name: str) -> bool:
        """Whether the bundle lists file ``name``."""
        return name in self.manifest["files"]

    def file(self, name: str) -> Path:
        """Path of a file listed in the manifest (checked at load time)."""
        if not self.has(name):
            raise BundleError(f"{name}: not in this bundle ({self.path})")
        return self.path / name

    def read_bytes(self, name: str) -> bytes:
        """The content of a listed file, checked again against its checksum: a file
        read after loading must still be the one that was verified (not replaced, not
        a link out of the bundle)."""
        path = self.file(name)
        try:
            handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(handle, "rb") as f:
                content = f.read()
        except OSError as err:
            raise BundleError(f"{name}: unreadable after the bundle was loaded ({err.strerror})") from err
        if hashlib.sha256(content).hexdigest() != self.manifest["files"][name]["sha256"]:
            raise BundleError(f"{name}: checksum mismatch (the file changed after the bundle was loaded)")
        return content

    def array(self, name: str) -> np.ndarray:
        """An extra ``.npy`` file of the bundle (e.g. ``cluster_labels.npy``), verified and loaded once."""
        if name not in self._extra:
            self._extra[name] = load_npy(self.file(name), self.read_bytes(name))
        return self._extra[name]

    def implicit_rows(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The users' implicit rows per movie (:data:`IMPLICIT_ARRAYS`), checked
        against the core arrays, or None when the model has no implicit part."""
        if not (self.has(IMPLICIT_EMBEDDINGS) and self.has(IMPLICIT_BIASES)):
            return None
        vectors, biases = self.array(IMPLICIT_EMBEDDINGS), self.array(IMPLICIT_BIASES)
        _check_array(IMPLICIT_EMBEDDINGS, vectors, rows=len(self.movie_ids), cols=self.dim)
        _check_array(IMPLICIT_BIASES, biases, rows=len(self.movie_ids))
        return vectors, biases

    def json(self, name: str) -> Any:
        """A ``.json`` file of the bundle, verified and parsed."""
        try:
            return json.loads(self.read_bytes(name).decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BundleError(f"{name}: not valid JSON ({err})") from err

    def predict(self, user_ids: np.ndarray, movie_ids: np.ndarray, clip: bool = True) -> np.ndarray:
        """Predicted ratings for paired original ids; see :func:`predict_ratings`."""
        return predict_ratings(
            self.global_mean,
            self.user_embeddings,
            self.movie_embeddings,
            self.user_biases,
            self.movie_biases,
            self.user_vocab.numbers(user_ids, missing="negative"),
            self.movie_vocab.numbers(movie_ids, missing="negative"),
            self.rating_scale if clip else None,
        )

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = True) -> "Bundle":
        """Load and verify the bundle at ``path`` (a folder or a link to one).

        Raises
        ------
        BundleError
            If the manifest, a listed file, a checksum, a dtype or a shape is wrong;
            the message names the file.
        """
        folder = Path(path).resolve()
        manifest = _read_manifest(folder)
        if verify:
            _verify_checksums(folder, manifest)
        arrays = {name: load_npy(folder / name) for name in CORE_ARRAYS}
        n_users = arrays["user_ids.npy"].shape[0] if arrays["user_ids.npy"].ndim == 1 else None
        n_movies = arrays["movie_ids.npy"].shape[0] if arrays["movie_ids.npy"].ndim == 1 else None
        _check_array("user_ids.npy", arrays["user_ids.npy"])
        _check_array("movie_ids.npy", arrays["movie_ids.npy"])
        _check_array("movie_embeddings.npy", arrays["movie_embeddings.npy"], rows=n_movies)
        dim = arrays["movie_embeddings.npy"].shape[1]
        _check_array("user_embeddings.npy", arrays["user_embeddings.npy"], rows=n_users, cols=dim)
        _check_array("user_biases.npy", arrays["user_biases.npy"], rows=n_users)
        _check_array("movie_biases.npy", arrays["movie_biases.npy"], rows=n_movies)
        for name in ("user_ids.npy", "movie_ids.npy"):
            if len(np.unique(arrays[name])) != len(arrays[name]):
                raise BundleError(f"{name}: ids are not unique")
        movies = _load_movies(folder / MOVIES_FILE, arrays["movie_ids.npy"])
        seen = _load_seen(folder / SEEN_FILE, (n_users, n_movies))
        return cls(
            path=folder,
            manifest=manifest,
            user_embeddings=arrays["user_embeddings.npy"],
            movie_embeddings=arrays["movie_embeddings.npy"],
            user_biases=arrays["user_biases.npy"],
            movie_biases=arrays["movie_biases.npy"],
            user_ids=arrays["user_ids.npy"],
            movie_ids=arrays["movie_ids.npy"],
            movies=movies,
            seen=seen,
        )


def _load_movies(path: Path, movie_ids: np.ndarray) -> pd.DataFrame:
    try:
        movies = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise BundleError(f"{path.name}: unreadable ({err})") from err
    missing = [c for c in MOVIE_COLUMNS if c not in movies.columns]
    if missing:
        raise BundleError(f"{path.name}: missing columns {missing}")
    if len(movies) != len(movie_ids) or not np.array_equal(movies["movie_id"].to_numpy(np.int64), movie_ids):
        raise BundleError(f"{path.name}: rows do not match movie_ids.npy")
    return movies


def _load_seen(path: Path, shape: tuple[int | None, int | None]) -> sp.csr_matrix:
    try:
        seen = sp.load_npz(path)  # allow_pickle=False inside scipy
    except Exception as err:
        raise BundleError(f"{path.name}: unreadable sparse matrix ({err})") from err
    if seen.shape != shape:
        raise BundleError(f"{path.name}: shape {seen.shape}, expected {shape}")
    return seen.tocsr()


def seen_writer(matrix: sp.spmatrix) -> FileWriter:
    """A writer for the training-ratings CSR matrix."""

    def write(path: Path) -> None:
        # Stored, not deflated: at ML-25M size compressing took 13 s of the export
        # and inflating it again about a second of every server start.
        sp.save_npz(path, sp.csr_matrix(matrix), compressed=False)

    return write


def movies_writer(movies: pd.DataFrame) -> FileWriter:
    """A writer for the movie table (parquet)."""

    def write(path: Path) -> None:
        movies.loc[:, list(MOVIE_COLUMNS)].to_parquet(path, index=False)

    return write
