"""The bundle: one folder of ``manifest.json`` + files, the only thing passed between the packages.

:data:`ARRAYS` is its schema at a glance: every ``.npy`` file, its dtype, shape and meaning; beside them
``movies.parquet`` (:data:`MOVIE_COLUMNS`), ``seen.npz`` (the training ratings, CSR users x movies),
``clusters.json`` (:class:`embedder.schemas.ClusterSummary` per cluster) and files only checksummed here (``model.pt``,
the FAISS indexes, ``history.csv``, ``training_curve.png``). :meth:`Bundle.load` is the one place a bundle is read:
it checks the manifest, every file's sha256, dtype and shape, and every value a reader indexes with, so a bundle
loads whole or is refused by a :class:`BundleError` naming the file. Writers stage a folder and publish it as a
new version (:mod:`embedder.publish`). Numpy, pandas and scipy only: ``search`` and ``web`` never load torch.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable, Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import TypeAdapter, ValidationError

from embedder.checks import error_path, shorten
from embedder.factors import MFModel
from embedder.publish import publish, staging_folder
from embedder.schemas import ClusterSummary, Manifest
from embedder.vocab import Vocabulary

SCHEMA_VERSION = 1
MANIFEST, MOVIES_FILE, SEEN_FILE, CLUSTERS_FILE = (
    "manifest.json",
    "movies.parquet",
    "seen.npz",
    "clusters.json",
)
MOVIE_COLUMNS = ("movie_id", "title", "genres", "rating_count", "mean_rating")
IMPLICIT_EMBEDDINGS, IMPLICIT_BIASES = "implicit_embeddings.npy", "implicit_biases.npy"


@dataclass(frozen=True)
class Array:
    """A ``.npy`` file of the bundle. ``shape`` names its sizes (``users``, ``movies``, ``dim``: equal in every
    file; a number: fixed; None: any); ``values``: the range ``[low, size)`` of an array readers index with."""

    dtype: str
    shape: tuple[str | int | None, ...]
    meaning: str
    values: tuple[int, str] | None = None
    finite: bool = True


ARRAYS = {
    "user_ids.npy": Array("int64", ("users",), "row -> original (MovieLens) user id, unique"),
    "movie_ids.npy": Array("int64", ("movies",), "row -> original movie id, unique"),
    "user_embeddings.npy": Array("float32", ("users", "dim"), "p_u"),
    "movie_embeddings.npy": Array("float32", ("movies", "dim"), "q_i"),
    "user_biases.npy": Array("float32", ("users",), "b_u"),
    "movie_biases.npy": Array("float32", ("movies",), "b_i"),
    # Optional, with the users' implicit part; only fold-in reads them (the user rows already include it).
    IMPLICIT_EMBEDDINGS: Array("float32", ("movies", "dim"), "E_j: what rating movie j adds to a user's row"),
    IMPLICIT_BIASES: Array("float32", ("movies",), "c_j: what rating movie j adds to a user's bias"),
    # Added by `python -m search build`.
    "item_vectors.npy": Array("float32", ("movies", None), "[q_i, b_i, 1]: the index's rows"),
    "cluster_labels.npy": Array(
        "int32", ("movies",), "K-Means cluster of each movie, -1: none", (-1, "clusters")
    ),
    "movie_map.npy": Array("float32", ("movies", 2), "2-D PCA of the movies, for the cluster map"),
    "similar_movies.npy": Array(
        "int32", ("movies", "width"), "most similar rows, best first, -1 padded", (-1, "movies")
    ),
    "similar_scores.npy": Array(
        "float32", ("movies", "width"), "their similarities, -inf padded", finite=False
    ),
}
REQUIRED = [*list(ARRAYS)[:6], MOVIES_FILE, SEEN_FILE]

FileWriter = Callable[[Path], None]
"""Writes one file at the path it is given."""


class BundleError(ValueError):
    """A bundle is missing, corrupt or inconsistent; the message names the file."""


def utc_now() -> str:
    """The current UTC time as an ISO-8601 string (seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# --------------------------------------------------------------------------- writing


def npy_writer(array: np.ndarray) -> FileWriter:
    """A writer of ``array`` as a plain ``.npy`` file; bundles never hold pickles."""
    if array.dtype.hasobject:
        raise BundleError("refusing to write an object array: bundles never hold pickles")
    return lambda path: np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def json_writer(obj: Any) -> FileWriter:
    """A writer of ``obj`` as indented, strict JSON (see :func:`strict_json`)."""
    return lambda path: path.write_text(strict_json(obj, path.name) + "\n", encoding="utf-8")


def bytes_writer(data: bytes) -> FileWriter:
    """A writer of raw bytes."""
    return lambda path: path.write_bytes(data)


def movies_writer(movies: pd.DataFrame) -> FileWriter:
    """A writer of the movie table (parquet, :data:`MOVIE_COLUMNS`)."""
    return lambda path: movies.loc[:, list(MOVIE_COLUMNS)].to_parquet(path, index=False)


def seen_writer(matrix: sp.spmatrix) -> FileWriter:
    """A writer of the training-ratings CSR matrix (stored, not deflated: every server start reads it)."""
    return lambda path: sp.save_npz(path, sp.csr_matrix(matrix), compressed=False)


def strict_json(obj: Any, name: str) -> str:
    """``obj`` as indented JSON; BundleError naming the file ``name`` and the key of a NaN or infinity."""
    try:
        return json.dumps(obj, indent=2, allow_nan=False)
    except ValueError:
        key, value = _non_finite(obj) or ("the value", "not finite")
        raise BundleError(f"{name}: {key} is {value}; JSON holds finite numbers only") from None


def _non_finite(obj: Any, key: str = "") -> tuple[str, float] | None:
    """The dotted key and value of the first NaN or infinite float in ``obj``, or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return key, obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    return next(filter(None, (_non_finite(v, f"{key}.{k}" if key else str(k)) for k, v in items)), None)


def check_replaceable(dest: Path) -> None:
    """Refuse a destination no publish may replace (BundleError): a file, a folder that is not a bundle, or a
    bundle folder (a version never changes: publish through a link to it). Nothing, a link, an empty folder pass."""
    if dest.is_symlink() or not os.path.lexists(dest) or (dest.is_dir() and not any(dest.iterdir())):
        return
    if not dest.is_dir():
        raise BundleError(f"{dest}: is a file, not a bundle folder; refusing to replace it")
    if not (dest / MANIFEST).is_file():
        raise BundleError(f"{dest}: is a folder but not a bundle (no {MANIFEST}); refusing to replace it")
    raise BundleError(
        f"{dest}: is a bundle folder, not a link to one; a published bundle never changes, so refusing to replace "
        "it: name a link to it (artifacts/current, or a path a publish made) or a new path"
    )


def write_bundle(dest: str | os.PathLike, files: Mapping[str, FileWriter], manifest: dict) -> Path:
    """Write a new bundle at ``dest`` as a new version, atomically; returns ``dest``.

    ``files``: file name -> writer. ``manifest``: its fields; ``schema_version``, ``created`` and ``files``
    (sha256 and size of each file) are added here. What ``dest`` leads to changes in one step once the new
    version is complete (:func:`embedder.publish.publish`); what :func:`check_replaceable` refuses is refused.
    """
    dest = Path(os.path.abspath(dest))
    _publish(dest, files, {"schema_version": SCHEMA_VERSION, "created": utc_now(), **manifest})
    return dest


def update_bundle(
    path: str | os.PathLike, files: Mapping[str, FileWriter], manifest_updates: Mapping[str, Any]
) -> Path:
    """Add or replace files of the bundle at ``path`` (a link to its version), atomically; returns the new
    version. The bundle is verified, its other files hard-linked (copied where links fail) into the new
    version, which ``path`` then leads to; the old version stays until ``bundles --keep`` prunes it."""
    path = Path(os.path.abspath(path))
    check_replaceable(path)
    old = Bundle.load(path)
    return _publish(path, files, {**old.manifest, **manifest_updates, "updated": utc_now()}, old)


def _publish(dest: Path, files: Mapping[str, FileWriter], manifest: dict, old: Bundle | None = None) -> Path:
    """Fill a staging folder (``old``'s other files linked in, ``files`` written, the manifest last, all
    synced), then publish it at ``dest``; the staging folder is removed if anything fails."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    check_replaceable(dest)
    staged = staging_folder(dest)
    try:
        listed = {name: entry for name, entry in manifest.get("files", {}).items() if name not in files}
        for name in listed:
            try:
                os.link(old.path / name, staged / name)
            except OSError:
                shutil.copy2(old.path / name, staged / name)
        for name, write in files.items():
            write(staged / name)
            listed[name] = {"sha256": sha256_file(staged / name), "bytes": (staged / name).stat().st_size}
        text = strict_json({**manifest, "files": dict(sorted(listed.items()))}, MANIFEST)
        (staged / MANIFEST).write_text(text + "\n", encoding="utf-8")
        for name in [*files, MANIFEST]:
            with open(staged / name, "rb") as handle:
                os.fsync(handle.fileno())
        check_replaceable(dest)  # again: what is there may have changed while the files were written
        return publish(staged, dest)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- reading


def _open(folder: Path, name: str) -> IO[bytes]:
    """The regular file ``name`` of ``folder`` opened for reading, never through a link (``O_NOFOLLOW``) nor
    blocking on a FIFO; BundleError naming the file otherwise."""
    try:
        fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BundleError(f"{name}: missing from {folder}") from None
    except OSError as err:
        reason = (
            "is a symbolic link; a bundle holds its own regular files"
            if err.errno == errno.ELOOP
            else err.strerror
        )
        raise BundleError(f"{name}: {reason}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BundleError(f"{name}: not a regular file")
    return os.fdopen(fd, "rb")


def strict_loads(data: bytes, name: str) -> Any:
    """Strict JSON from UTF-8 ``data`` (no NaN, infinities or numbers beyond a float); BundleError naming ``name``."""

    def refuse(text: str) -> float:
        raise BundleError(f"{name}: {text[:40]} is not a finite number; JSON holds finite numbers only")

    try:
        return json.loads(
            data,
            parse_constant=refuse,
            parse_float=lambda t: v if math.isfinite(v := float(t)) else refuse(t),
        )
    except (ValueError, RecursionError) as err:
        if isinstance(err, BundleError):
            raise
        raise BundleError(f"{name}: not valid JSON ({shorten(str(err) or 'nested too deep', 80)})") from None


def _validated(schema: TypeAdapter, value: Any, name: str) -> Any:
    """``value`` checked by ``schema``; BundleError naming the file, the first bad entry and its value."""
    try:
        return schema.validate_python(value)
    except ValidationError as err:
        error = err.errors(include_url=False)[0]
    shown = "" if error["type"] == "missing" else f", got {shorten(json.dumps(error['input'], default=str))}"
    message = re.sub(r" or instance of \w+", "", error["msg"])  # a class name means nothing to a reader
    raise BundleError(f"{name}: {error_path(error['loc']) or 'the file'}: {message}{shown}")


_MANIFEST, _CLUSTERS = TypeAdapter(Manifest), TypeAdapter(list[ClusterSummary])


def _parse(folder: Path, name: str, handle: IO[bytes], mmap: bool) -> Any:
    """The content of the listed file ``name`` (``handle`` at its start): an array (memory-mapped with ``mmap``),
    the movie table, the CSR matrix, parsed JSON, or None for files readers take as bytes."""
    suffix = Path(name).suffix
    if suffix == ".npy":
        array = np.load(
            folder / name if mmap else handle, mmap_mode="r" if mmap else None, allow_pickle=False
        )
        return np.asarray(array)  # a memory map as a plain ndarray over the same pages
    if name == MOVIES_FILE:
        return pd.read_parquet(handle)
    if name == SEEN_FILE:
        seen = sp.load_npz(handle)
        if seen.format != "csr":
            raise ValueError(f"a {seen.format} matrix, expected csr")
        seen.check_format(
            full_check=True
        )  # indptr monotone, indices within the movies: what readers index with
        return sp.csr_matrix(seen)
    return strict_loads(handle.read(), name) if suffix == ".json" else None


def _read(folder: Path, name: str, sha256: str | None, mmap: bool) -> Any:
    """The listed file ``name``, its checksum verified (unless ``sha256`` is None), parsed (:func:`_parse`)."""
    with _open(folder, name) as handle:
        if sha256 is not None and hashlib.file_digest(handle, "sha256").hexdigest() != sha256:
            raise BundleError(f"{name}: checksum mismatch (the file changed after the bundle was written)")
        handle.seek(0)
        try:
            return _parse(folder, name, handle, mmap)
        except BundleError:
            raise
        except Exception as err:  # numpy, pyarrow and scipy raise many types for a damaged file
            raise BundleError(f"{name}: unreadable ({shorten(str(err), 200)})") from None


def _check_array(name: str, array: np.ndarray, sizes: dict[str, int]) -> None:
    """``array`` against :data:`ARRAYS`; the sizes it is first to name are recorded in ``sizes``."""
    spec = ARRAYS[name]
    if array.dtype != np.dtype(spec.dtype) or array.ndim != len(spec.shape):
        raise BundleError(
            f"{name}: expected {spec.dtype} with {len(spec.shape)} dimension(s), found {array.dtype} {array.shape}"
        )
    for axis, (size, found) in enumerate(zip(spec.shape, array.shape)):
        expected = sizes.setdefault(size, found) if isinstance(size, str) else size
        if expected not in (None, found):
            what = "rows" if axis == 0 else "columns"
            raise BundleError(f"{name}: has {found} {what}, expected {expected}")
    if spec.finite and array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BundleError(f"{name}: contains NaN or infinite values")
    if spec.values and array.size:
        low, high = spec.values[0], sizes.get(spec.values[1], 0)
        if array.min() < low or array.max() >= high:
            raise BundleError(
                f"{name}: values must be from {low} to {high - 1} ({spec.values[1]}), found {array.min()}..{array.max()}"
            )


@dataclass
class Bundle:
    """A loaded, verified bundle: its ``model`` (:class:`embedder.factors.MFModel`, row ``r`` of the user arrays
    is user ``user_ids[r]``), the movie table, the training ratings ``seen`` (CSR users x movies), the manifest."""

    path: Path
    manifest: dict
    model: MFModel
    movies: pd.DataFrame
    seen: sp.csr_matrix
    mapped: bool = False
    """Whether the arrays are read-only memory maps of the files (``Bundle.load(mmap=True)``)."""
    content: dict[str, Any] = field(default_factory=dict, repr=False)
    """Every listed ``.npy`` and ``.json`` file, parsed and checked at load."""

    @property
    def rating_scale(self) -> tuple[float, float]:
        """(lowest, highest) rating of the dataset; reported predictions are clipped to it."""
        return self.model.rating_scale

    @property
    def user_vocab(self) -> Vocabulary:
        """User id <-> row."""
        return self.model.user_vocab

    @property
    def movie_vocab(self) -> Vocabulary:
        """Movie id <-> row."""
        return self.model.movie_vocab

    @property
    def user_ids(self) -> np.ndarray:
        """Original ids of the users, in row order."""
        return self.model.user_vocab.ids

    @property
    def movie_ids(self) -> np.ndarray:
        """Original ids of the movies, in row order."""
        return self.model.movie_vocab.ids

    @property
    def dim(self) -> int:
        """Embedding size d."""
        return self.model.dim

    def has(self, name: str) -> bool:
        """Whether the bundle lists file ``name``."""
        return name in self.manifest["files"]

    def file(self, name: str) -> Path:
        """Path of the listed file ``name``."""
        if not self.has(name):
            raise BundleError(f"{name}: not in this bundle ({self.path})")
        return self.path / name

    def array(self, name: str) -> np.ndarray:
        """A listed ``.npy`` file, as checked at load."""
        return self.content[self.file(name).name]

    def json(self, name: str) -> Any:
        """A listed ``.json`` file, as parsed (strict JSON) and checked at load."""
        return self.content[self.file(name).name]

    def read_bytes(self, name: str) -> bytes:
        """A listed file's bytes, checked again against its checksum (still the file that was verified)."""
        try:
            with _open(self.path, self.file(name).name) as handle:
                content = handle.read()
        except (BundleError, OSError) as err:
            raise BundleError(f"{name}: unreadable after the bundle was loaded ({err})") from None
        if hashlib.sha256(content).hexdigest() != self.manifest["files"][name]["sha256"]:
            raise BundleError(f"{name}: checksum mismatch (the file changed after the bundle was loaded)")
        return content

    def implicit_rows(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The users' implicit rows per movie (``E_j``, ``c_j``), or None when the model has no implicit part."""
        if not (self.has(IMPLICIT_EMBEDDINGS) and self.has(IMPLICIT_BIASES)):
            return None
        return self.content[IMPLICIT_EMBEDDINGS], self.content[IMPLICIT_BIASES]

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = True, mmap: bool = False) -> Bundle:
        """Load the bundle at ``path`` (a folder or a link to one), verified whole.

        ``verify``: check every file's sha256. ``mmap``: the ``.npy`` arrays are read-only memory maps, so
        processes serving the same bundle share their pages (the server loads this way).

        Raises
        ------
        BundleError
            If anything is missing, unreadable, a checksum, dtype, shape or value out of range; naming the file.
        """
        try:
            folder = Path(path).resolve(strict=True)
        except (OSError, RuntimeError) as err:  # missing, or a loop of links
            raise BundleError(
                f"{path}: no bundle folder there ({err}); train one with `python -m embedder train`"
            ) from None
        if not folder.is_dir():
            raise BundleError(
                f"{path}: no bundle folder there, a file; train one with `python -m embedder train`"
            )
        with _open(folder, MANIFEST) as handle:
            manifest = strict_loads(handle.read(), MANIFEST)
        if not isinstance(manifest, dict):
            raise BundleError(f"{MANIFEST}: must be a JSON object, got {type(manifest).__name__}")
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise BundleError(
                f"{MANIFEST}: schema_version {manifest.get('schema_version')!r}, this code reads {SCHEMA_VERSION}"
            )
        _validated(_MANIFEST, manifest, MANIFEST)
        listed = manifest["files"]
        if missing := [name for name in REQUIRED if name not in listed]:
            raise BundleError(f"{missing[0]}: not listed in {MANIFEST}")
        if odd := [name for name in listed if Path(name).name != name or name in (".", "..", MANIFEST)]:
            raise BundleError(f"{shorten(odd[0], 80)}: file names in {MANIFEST} must be plain names")
        low, high = manifest["rating_scale"]
        if not low < high:
            raise BundleError(f"{MANIFEST}: rating_scale must be [lowest, highest], got {[low, high]}")
        reads = [name for name in listed if verify or name.endswith((".npy", ".json")) or name in REQUIRED]
        content = {
            name: _read(folder, name, listed[name]["sha256"] if verify else None, mmap) for name in reads
        }
        return cls._checked(folder, manifest, content, mmap)

    @classmethod
    def _checked(cls, folder: Path, manifest: dict, content: dict[str, Any], mmap: bool) -> Bundle:
        """The bundle of the parsed files ``content``, once they agree with each other."""
        sizes: dict[str, int] = {}
        if CLUSTERS_FILE in content:
            summaries = _validated(_CLUSTERS, content[CLUSTERS_FILE], CLUSTERS_FILE)
            for position, summary in enumerate(summaries):
                if summary.cluster != position:
                    raise BundleError(
                        f"{CLUSTERS_FILE}: [{position}].cluster must be its position, {position}, got {summary.cluster}"
                    )
            sizes["clusters"] = len(summaries)
        for name in [name for name in ARRAYS if name in content]:
            _check_array(name, content[name], sizes)
        vocab = {}
        for kind in ("user", "movie"):
            try:
                vocab[kind] = Vocabulary(content[f"{kind}_ids.npy"], kind)
            except ValueError:
                raise BundleError(f"{kind}_ids.npy: ids are not unique") from None
        movies = content.pop(MOVIES_FILE)
        if missing := [column for column in MOVIE_COLUMNS if column not in movies.columns]:
            raise BundleError(f"{MOVIES_FILE}: missing columns {missing}")
        if not np.array_equal(movies["movie_id"].to_numpy(), content["movie_ids.npy"]):
            raise BundleError(f"{MOVIES_FILE}: rows do not match movie_ids.npy")
        seen = content.pop(SEEN_FILE)
        if seen.shape != (sizes["users"], sizes["movies"]):
            raise BundleError(
                f"{SEEN_FILE}: shape {seen.shape}, expected {(sizes['users'], sizes['movies'])}"
            )
        low, high = manifest["rating_scale"]
        model = MFModel(
            float(manifest["global_mean"]),
            *(
                content[f"{part}.npy"]
                for part in ("user_embeddings", "movie_embeddings", "user_biases", "movie_biases")
            ),
            (float(low), float(high)),
            vocab["user"],
            vocab["movie"],
        )
        return cls(folder, manifest, model, movies, seen, mmap, content)
