"""The bundle: one folder of ``manifest.json`` + ``.npy`` files, the only thing
passed between the packages.

This module is the single definition of the format. It imports numpy, pandas and
scipy only (never torch), so ``search`` and ``web`` use it to read bundles and to
add their own files without pulling in the training stack.

Writing is atomic: a bundle is assembled in a hidden temporary folder beside its
destination and put in place in one step (a rename, a link moved, or a folder
exchanged with a link: :mod:`embedder.publish`), so a crash never leaves a
half-written bundle, or none, where a reader looks. Loading checks the manifest,
the schema version, every file's sha256, dtypes and shapes, opens every file
without following links, and raises :class:`BundleError` naming the offending
file. :mod:`embedder.artifacts` lists and prunes the versions ``train`` publishes
in ``artifacts/bundles/``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedder.checks import error_path, shorten
from embedder.model import MFModel
from embedder.publish import fsync_dir, is_version_of, publish, staging_folder, version_base, version_home
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


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    with open(path, "rb") as handle:
        return _sha256_of(handle)


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
    """A writer that saves ``obj`` as indented, strict JSON (see :func:`strict_json`)."""

    def write(path: Path) -> None:
        path.write_text(strict_json(obj, path.name) + "\n", encoding="utf-8")

    return write


def strict_json(obj: Any, name: str) -> str:
    """``obj`` as indented JSON, refusing NaN and infinities: JSON has no such numbers
    (``json.dumps`` would write a bare ``NaN`` that strict readers reject).

    Raises
    ------
    BundleError
        Naming the file ``name`` and the key of the first number that is not finite.
    """
    try:
        return json.dumps(obj, indent=2, allow_nan=False)
    except ValueError as err:
        found = _non_finite(obj)
        if found is None:
            raise
        raise BundleError(f"{name}: {found[0] or 'the value'} is {found[1]}; JSON holds finite numbers only") from err


def _non_finite(obj: Any, key: str = "") -> tuple[str, float] | None:
    """The dotted key and value of the first NaN or infinite float in ``obj``, or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return key, obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for inner, value in items:
        found = _non_finite(value, f"{key}.{inner}" if key else str(inner))
        if found is not None:
            return found
    return None


def bytes_writer(data: bytes) -> FileWriter:
    """A writer that saves raw bytes."""

    def write(path: Path) -> None:
        path.write_bytes(data)

    return write


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
    text = strict_json(manifest, MANIFEST)
    with open(folder / MANIFEST, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(folder)


def check_replaceable(dest: Path) -> None:
    """Refuse to replace what is not a bundle: a user's folder or file named by mistake
    (BundleError); nothing there, an empty folder, a link or a bundle folder pass."""
    if dest.is_symlink() or not os.path.lexists(dest):
        return
    if not dest.is_dir():
        raise BundleError(f"{dest}: is a file, not a bundle folder; refusing to replace it")
    if not (dest / MANIFEST).is_file() and any(dest.iterdir()):
        raise BundleError(f"{dest}: is a folder but not a bundle (no {MANIFEST}); refusing to replace it")


def _publish_staged(dest: Path, fill: Callable[[Path], None]) -> Path:
    """Fill a staging folder beside ``dest`` (or beside the folder it links to) with
    ``fill(folder)``, then put it in place (:func:`embedder.publish.publish`) after
    checking ``dest`` again, since what is there may have changed while the files
    were written; returns the folder that now holds it. The staging folder is
    removed if anything fails. Every bundle writer goes through here."""
    home = version_home(dest)
    staged = staging_folder(home)
    try:
        fill(staged)
        check_replaceable(dest)
        return publish(staged, dest, home)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def write_bundle(dest: str | os.PathLike, files: Mapping[str, FileWriter], manifest: dict) -> Path:
    """Write a new bundle at ``dest`` atomically.

    Parameters
    ----------
    dest:
        The bundle's path. Its parent is created if needed. What is there is
        replaced only once the new bundle is complete, in one step: a link moves
        to a new version beside the folder it points to; a bundle folder becomes
        a link to a new version ``<dest>+<UTC stamp>`` beside it, its old content
        kept as the previous version (:func:`embedder.publish.publish`). Anything else that is
        not empty is refused.
    files:
        File name -> writer (see :func:`npy_writer`, :func:`json_writer`).
    manifest:
        Manifest fields; ``schema_version``, ``created`` and ``files`` (sha256 and
        size of every file) are filled in here.

    Returns
    -------
    Path
        ``dest``, which now loads the new bundle.
    """
    dest = Path(os.path.abspath(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    check_replaceable(dest)
    base = {"schema_version": SCHEMA_VERSION, "created": utc_now()}
    _publish_staged(dest, lambda staged: _fill_folder(staged, files, {**base, **manifest, "files": {}}))
    return dest


def update_bundle(
    path: str | os.PathLike,
    files: Mapping[str, FileWriter],
    manifest_updates: Mapping[str, Any],
) -> Path:
    """Add or replace files in an existing bundle, atomically; returns the new
    version folder that holds the result.

    The bundle is verified first, copied (hard links where possible, since bundle
    files are never modified in place) into a temporary folder beside it, and the
    new files and manifest fields are written there. The copy is then published
    at ``path`` as by :func:`write_bundle`, as a new version:

    * ``path`` a link (such as ``artifacts/current``): the version is made beside
      the linked folder (``<name>+<UTC stamp>``) and the link moved to it.
    * ``path`` a folder: the version is made beside it, and ``path`` becomes a
      link to it in one step; the old content is kept as the previous version.

    Old versions are left as they were (``python -m embedder bundles --keep N``
    prunes), so a crash at any moment leaves ``path`` on one complete bundle, and
    a server following ``path`` switches to the new version.
    """
    path = Path(os.path.abspath(path))
    bundle = Bundle.load(path)

    def copy_and_fill(staged: Path) -> None:
        for name in bundle.manifest["files"]:
            if name in files:
                continue
            try:
                os.link(bundle.path / name, staged / name)
            except OSError:
                shutil.copy2(bundle.path / name, staged / name)
        _fill_folder(staged, files, {**bundle.manifest, **manifest_updates, "updated": utc_now()})

    return _publish_staged(path, copy_and_fill)


# --------------------------------------------------------------------------- reading


def load_npy(path: Path, source: bytes | IO[bytes] | None = None) -> np.ndarray:
    """Load a ``.npy`` file (or its content ``source``: bytes already read, or an open
    file) without pickle; errors name the file."""
    try:
        return np.load(path if source is None else io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err):  # numpy says "Object arrays cannot be loaded when allow_pickle=False"
            raise BundleError(f"{path.name}: cannot be loaded without pickle ({err})") from err
        raise BundleError(f"{path.name}: unreadable .npy file ({err})") from err
    except (OSError, EOFError, MemoryError) as err:  # MemoryError: a header claiming a huge shape
        raise BundleError(f"{path.name}: unreadable .npy file ({err})") from err


_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def map_npy(path: Path, handle: IO[bytes]) -> np.ndarray:
    """A read-only memory map of the ``.npy`` file open as ``handle`` (from its start),
    as a plain ndarray: its pages are the operating system's file cache, which every
    process mapping the file shares. Mapping the open file, not the path, keeps the
    file checked (a regular file, not a link) the file mapped. Bundle files are
    never changed in place (new versions are new files), so the map stays what was
    verified. Errors name the file."""
    try:
        version = np.lib.format.read_magic(handle)
        if version not in _NPY_HEADER_READERS:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, fortran, dtype = _NPY_HEADER_READERS[version](handle)
        if dtype.hasobject:
            raise BundleError(f"{path.name}: cannot be loaded without pickle (an object array)")
        if math.prod(shape) == 0:  # an empty file region cannot be mapped
            return np.empty(shape, dtype)
        mapped = np.memmap(handle, dtype=dtype, mode="r", offset=handle.tell(), shape=shape, order="F" if fortran else "C")
    except (ValueError, OSError, EOFError) as err:  # e.g. a header claiming more than the file holds
        raise BundleError(f"{path.name}: unreadable .npy file ({err})") from err
    return mapped.view(np.ndarray)


def open_in_bundle(folder: Path, name: str) -> IO[bytes]:
    """Open the file ``name`` of the bundle ``folder`` for reading: a regular file,
    never through a symbolic link (``O_NOFOLLOW``, so the check and the open are one
    step and a link swapped in between is refused too).

    Raises
    ------
    BundleError
        Naming the file: missing, a link, not a regular file, or unreadable.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # O_NONBLOCK: a FIFO cannot hang us
    try:
        fd = os.open(folder / name, flags)
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise BundleError(f"{name}: missing from {folder}") from err
        if err.errno == errno.ELOOP:
            raise BundleError(f"{name}: is a symbolic link; a bundle holds its own regular files") from err
        raise BundleError(f"{name}: unreadable ({err.strerror})") from err
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        raise BundleError(f"{name}: not a regular file")
    return handle


def _sha256_of(handle: IO[bytes]) -> str:
    """Hex sha256 of an open file, from where it stands, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    while block := handle.read(1 << 20):
        digest.update(block)
    return digest.hexdigest()


def strict_loads(data: bytes, name: str) -> Any:
    """Parse strict JSON from UTF-8 ``data``: ``NaN``, ``Infinity`` and numbers too
    large for a float are refused (BundleError naming the file ``name``), as is
    anything that is not JSON."""

    def refuse(constant: str) -> float:
        raise BundleError(f"{name}: {constant[:40]} is not a finite number; JSON holds finite numbers only")

    def number(text: str) -> float:
        value = float(text)
        return value if math.isfinite(value) else refuse(text)

    try:
        return json.loads(data.decode("utf-8"), parse_constant=refuse, parse_float=number)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{name}: not valid JSON ({err})") from err


def _missing_folder(folder: Path) -> str:
    """Why there is no bundle at ``folder``, naming the versions beside it when a
    replacement without an atomic exchange was interrupted (:func:`embedder.publish.publish`)."""
    base = version_base(folder.name)
    versions = sorted(p.name for p in folder.parent.iterdir() if is_version_of(p.name, base) and p.is_dir()) if folder.parent.is_dir() else []
    if versions and not os.path.lexists(folder):
        return (
            f"{folder}: missing; a replacement was interrupted, and the versions beside it are {', '.join(versions)} "
            f"(the newest is the new bundle: ln -s {versions[-1]} {folder})"
        )
    return f"{folder}: no bundle folder there (train one with `python -m embedder train`)"


def _read_manifest(folder: Path) -> dict:
    if not folder.is_dir():
        raise BundleError(_missing_folder(folder))
    with open_in_bundle(folder, MANIFEST) as handle:
        manifest = strict_loads(handle.read(), MANIFEST)
    if not isinstance(manifest, dict):  # the rest, 'files' included, is the model's to check
        raise BundleError(f"{MANIFEST}: must be a JSON object, got {type(manifest).__name__}")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{MANIFEST}: schema_version {version!r}, this code reads {SCHEMA_VERSION}")
    from embedder.schemas import MANIFEST_FILE  # here: pydantic is slow to import, and only bundle reading needs it

    _validated(MANIFEST_FILE, manifest, MANIFEST)
    for name in manifest["files"]:
        if Path(name).name != name or name in (".", "..", MANIFEST):
            raise BundleError(f"{str(name)[:80]}: file names in {MANIFEST} must be plain names")
    low, high = manifest["rating_scale"]
    if not low < high:
        raise BundleError(f"{MANIFEST}: rating_scale must be [lowest, highest], got {[low, high]}")
    return manifest


def _validated(schema: Any, value: Any, name: str) -> Any:
    """``value`` checked by ``schema`` (a pydantic ``TypeAdapter`` of :mod:`embedder.schemas`);
    BundleError naming the file ``name``, the first bad entry and its value."""
    from pydantic import ValidationError

    try:
        return schema.validate_python(value)
    except ValidationError as err:
        error = err.errors(include_url=False)[0]
    shown = "" if error["type"] == "missing" else f", got {shorten(json.dumps(error['input'], ensure_ascii=False, default=str))}"
    message = re.sub(r" or instance of \w+", "", error["msg"])  # the model's class name means nothing to a reader
    raise BundleError(f"{name}: {error_path(error['loc']) or 'the file'}: {message}{shown}")


def check_cluster_summaries(summaries: Any, name: str = "clusters.json") -> list[dict]:
    """``summaries`` (the parsed ``clusters.json`` that ``search build`` writes: one
    :class:`embedder.schemas.ClusterSummary` per cluster, in cluster order)
    returned as they are if they have that shape; BundleError naming the file and
    the first bad entry otherwise."""
    from embedder.schemas import CLUSTERS_FILE

    checked = _validated(CLUSTERS_FILE, summaries, name)
    for position, summary in enumerate(checked):
        if summary.cluster != position:
            raise BundleError(f"{name}: [{position}].cluster must be its position, {position}, got {summary.cluster}")
    return summaries


JSON_CHECKS: dict[str, Callable[[Any], Any]] = {"clusters.json": check_cluster_summaries}
"""The JSON files of a bundle whose shape :meth:`Bundle.json` checks after parsing."""


def _unreadable_after_load(name: str, err: Exception) -> BundleError:
    reason = str(err).removeprefix(f"{name}: ")
    return BundleError(f"{name}: unreadable after the bundle was loaded ({reason})")


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

    ``model`` is the model of the core arrays (:class:`embedder.model.MFModel`:
    row ``r`` of its user arrays belongs to user ``user_ids[r]``, the original
    MovieLens id); beside it the movie table, the training-ratings matrix ``seen``
    (CSR, users x movies) and the manifest.
    """

    path: Path
    manifest: dict
    model: MFModel
    """μ, biases and embeddings (memory maps with ``Bundle.load(mmap=True)``) and both vocabularies."""
    movies: pd.DataFrame
    seen: sp.csr_matrix
    mapped: bool = False
    """Whether the arrays are read-only memory maps (``Bundle.load(mmap=True)``), the
    extra ones read by :meth:`array` included."""
    _extra: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

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
        """Original ids of the users, in row order (``user_ids.npy``)."""
        return self.model.user_vocab.ids

    @property
    def movie_ids(self) -> np.ndarray:
        """Original ids of the movies, in row order (``movie_ids.npy``)."""
        return self.model.movie_vocab.ids

    @property
    def dim(self) -> int:
        """Embedding size d."""
        return self.model.dim

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
        with self._reopen(name) as handle:
            content = handle.read()
        self._check_unchanged(name, hashlib.sha256(content).hexdigest())
        return content

    def array(self, name: str) -> np.ndarray:
        """An extra ``.npy`` file of the bundle (e.g. ``cluster_labels.npy``), verified and
        loaded once; memory-mapped like the core arrays in a bundle loaded with ``mmap``."""
        if name not in self._extra:
            self._extra[name] = self._mapped_array(name) if self.mapped else load_npy(self.file(name), self.read_bytes(name))
        return self._extra[name]

    def _mapped_array(self, name: str) -> np.ndarray:
        """A listed ``.npy`` file as a read-only map of the file whose checksum was just checked."""
        with self._reopen(name) as handle:
            self._check_unchanged(name, _sha256_of(handle))
            handle.seek(0)
            return map_npy(self.path / name, handle)

    @contextlib.contextmanager
    def _reopen(self, name: str) -> Iterator[IO[bytes]]:
        """A listed file opened again after loading (:func:`open_in_bundle`); failing to
        open or read it is a BundleError that says so."""
        self.file(name)  # listed
        try:
            handle = open_in_bundle(self.path, name)
        except (BundleError, OSError) as err:
            raise _unreadable_after_load(name, err) from err
        with handle:
            try:
                yield handle
            except OSError as err:
                raise _unreadable_after_load(name, err) from err

    def _check_unchanged(self, name: str, sha256: str) -> None:
        if sha256 != self.manifest["files"][name]["sha256"]:
            raise BundleError(f"{name}: checksum mismatch (the file changed after the bundle was loaded)")

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
        """A ``.json`` file of the bundle, verified, parsed as strict JSON, and for the
        files of :data:`JSON_CHECKS` checked for shape."""
        value = strict_loads(self.read_bytes(name), name)
        return JSON_CHECKS[name](value) if name in JSON_CHECKS else value

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = True, mmap: bool = False) -> "Bundle":
        """Load and verify the bundle at ``path`` (a folder or a link to one).

        ``mmap``: the core ``.npy`` arrays are read-only memory maps of the verified
        files (:func:`map_npy`) instead of copies in this process's memory, so
        processes serving the same bundle share them (the server loads this way).

        Raises
        ------
        BundleError
            If the manifest, a listed file, a checksum, a dtype or a shape is wrong;
            the message names the file.
        """
        folder = Path(path).resolve()
        manifest = _read_manifest(folder)
        listed = manifest["files"]
        for name in CORE_ARRAYS.keys() | {MOVIES_FILE, SEEN_FILE}:
            if name not in listed:
                raise BundleError(f"{name}: not listed in {MANIFEST}")
        # Each file is opened once, without following links: the bytes checked are the bytes parsed.
        parsed: dict[str, Any] = {}
        for name in [*CORE_ARRAYS, MOVIES_FILE, SEEN_FILE, *(listed if verify else ())]:
            if name in parsed:
                continue
            with open_in_bundle(folder, name) as handle:
                if verify and _sha256_of(handle) != listed[name]["sha256"]:
                    raise BundleError(f"{name}: checksum mismatch (the file changed after the bundle was written)")
                handle.seek(0)
                if name in CORE_ARRAYS:
                    parsed[name] = (map_npy if mmap else load_npy)(folder / name, handle)
                else:  # the other listed files are only checked here
                    parsed[name] = _PARSERS[name](handle) if name in _PARSERS else None
        arrays = {name: parsed[name] for name in CORE_ARRAYS}
        n_users = arrays["user_ids.npy"].shape[0] if arrays["user_ids.npy"].ndim == 1 else None
        n_movies = arrays["movie_ids.npy"].shape[0] if arrays["movie_ids.npy"].ndim == 1 else None
        _check_array("user_ids.npy", arrays["user_ids.npy"])
        _check_array("movie_ids.npy", arrays["movie_ids.npy"])
        _check_array("movie_embeddings.npy", arrays["movie_embeddings.npy"], rows=n_movies)
        dim = arrays["movie_embeddings.npy"].shape[1]
        _check_array("user_embeddings.npy", arrays["user_embeddings.npy"], rows=n_users, cols=dim)
        _check_array("user_biases.npy", arrays["user_biases.npy"], rows=n_users)
        _check_array("movie_biases.npy", arrays["movie_biases.npy"], rows=n_movies)
        vocab = {}
        for kind in ("user", "movie"):
            try:
                vocab[kind] = Vocabulary(arrays[f"{kind}_ids.npy"], kind)
            except ValueError as err:  # the shape is checked above: the ids repeat
                raise BundleError(f"{kind}_ids.npy: ids are not unique") from err
        movies = _check_movies(parsed[MOVIES_FILE], arrays["movie_ids.npy"])
        seen = _check_seen(parsed[SEEN_FILE], (n_users, n_movies))
        low, high = manifest["rating_scale"]
        model = MFModel(
            float(manifest["global_mean"]),
            arrays["user_embeddings.npy"],
            arrays["movie_embeddings.npy"],
            arrays["user_biases.npy"],
            arrays["movie_biases.npy"],
            (float(low), float(high)),
            vocab["user"],
            vocab["movie"],
        )
        bundle = cls(path=folder, manifest=manifest, model=model, movies=movies, seen=seen, mapped=mmap)
        for name in JSON_CHECKS.keys() & listed.keys():
            bundle.json(name)  # small files that readers index into: refused now, not as a 500 later
        return bundle


def _read_movies(handle: IO[bytes]) -> pd.DataFrame:
    try:
        return pd.read_parquet(handle)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise BundleError(f"{MOVIES_FILE}: unreadable ({err})") from err


def _read_seen(handle: IO[bytes]) -> Any:
    try:
        return sp.load_npz(handle)  # allow_pickle=False inside scipy
    except Exception as err:
        raise BundleError(f"{SEEN_FILE}: unreadable sparse matrix ({err})") from err


_PARSERS = {MOVIES_FILE: _read_movies, SEEN_FILE: _read_seen}


def _check_movies(movies: pd.DataFrame, movie_ids: np.ndarray) -> pd.DataFrame:
    missing = [c for c in MOVIE_COLUMNS if c not in movies.columns]
    if missing:
        raise BundleError(f"{MOVIES_FILE}: missing columns {missing}")
    if len(movies) != len(movie_ids) or not np.array_equal(movies["movie_id"].to_numpy(np.int64), movie_ids):
        raise BundleError(f"{MOVIES_FILE}: rows do not match movie_ids.npy")
    return movies


def _check_seen(seen: Any, shape: tuple[int | None, int | None]) -> sp.csr_matrix:
    if seen.shape != shape:
        raise BundleError(f"{SEEN_FILE}: shape {seen.shape}, expected {shape}")
    return seen.tocsr()


def seen_writer(matrix: sp.spmatrix) -> FileWriter:
    """A writer for the training-ratings CSR matrix."""

    def write(path: Path) -> None:
        # Stored, not deflated: the export and every server start would otherwise pay to compress and inflate it.
        sp.save_npz(path, sp.csr_matrix(matrix), compressed=False)

    return write


def movies_writer(movies: pd.DataFrame) -> FileWriter:
    """A writer for the movie table (parquet)."""

    def write(path: Path) -> None:
        movies.loc[:, list(MOVIE_COLUMNS)].to_parquet(path, index=False)

    return write
