"""The bundle: one folder of ``manifest.json`` + files, the only thing passed between the packages. Its schema
is :data:`ARRAYS`, ``movies.parquet``, ``seen.npz`` (training ratings, CSR users x movies), ``clusters.json``
and files only checksummed (``model.pt``, indexes, history, curve). :meth:`Bundle.load` is the one reader: a
bundle loads whole, or a :class:`BundleError` names the file. No torch: ``search`` and ``web`` read here."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import TypeAdapter, ValidationError

from embedder.checks import shorten
from embedder.model import MFModel
from embedder.publish import is_version, publish, staging_folder
from embedder.relevance import RelevanceModel
from embedder.schemas import ClusterSummary, Manifest
from embedder.vocab import Vocabulary

SCHEMA_VERSION = 1
MANIFEST, MOVIES_FILE, SEEN_FILE = "manifest.json", "movies.parquet", "seen.npz"
CLUSTERS_FILE = "clusters.json"
MOVIE_COLUMNS = ("movie_id", "title", "genres", "rating_count", "mean_rating")
IMPLICIT_EMBEDDINGS, IMPLICIT_BIASES = "implicit_embeddings.npy", "implicit_biases.npy"
RELEVANCE_FILES = ("relevance_user_factors.npy", "relevance_movie_factors.npy", "relevance_shrinkage.npy")
ARRAYS: dict[str, tuple[str, tuple[str | int | None, ...], str]] = {
    "user_ids.npy": ("int64", ("users",), "row -> original (MovieLens) user id, unique"),
    "movie_ids.npy": ("int64", ("movies",), "row -> original movie id, unique"),
    "user_embeddings.npy": ("float32", ("users", "dim"), "p_u"),
    "movie_embeddings.npy": ("float32", ("movies", "dim"), "q_i"),
    "user_biases.npy": ("float32", ("users",), "b_u"),
    "movie_biases.npy": ("float32", ("movies",), "b_i"),
    IMPLICIT_EMBEDDINGS: ("float32", ("movies", "dim"), "optional: what rating movie j adds to a user's row"),
    IMPLICIT_BIASES: ("float32", ("movies",), "optional: what rating movie j adds to a user's bias"),
    "relevance_user_factors.npy": ("float32", ("users", "rank"), "optional: relevance p_u = x_u V D"),
    "relevance_movie_factors.npy": ("float32", ("movies", "rank"), "optional: relevance movie rows V"),
    "relevance_shrinkage.npy": ("float32", ("rank",), "optional: relevance D = σ² / (σ² + λ)"),
    "item_vectors.npy": ("float32", ("movies", None), "search build: [q_i, b_i, 1], the index's rows"),
    "cluster_labels.npy": ("int32", ("movies",), "search build: each movie's cluster, -1: none"),
    "movie_map.npy": ("float32", ("movies", 2), "search build: 2-D PCA of the movies"),
    "similar_movies.npy": ("int32", ("movies", "width"), "search build: most similar rows, -1 padded"),
    "similar_scores.npy": ("float32", ("movies", "width"), "search build: their similarities, -inf padded"),
}
"""Every ``.npy`` file: dtype, shape (named sizes agree across files; None: any), meaning."""
RANGES = {"cluster_labels.npy": (-1, "clusters"), "similar_movies.npy": (-1, "movies")}
"""The values of the arrays readers index with: from the first to the size named, exclusive."""
REQUIRED = [*list(ARRAYS)[:6], MOVIES_FILE, SEEN_FILE]
PARAMETERS = ("user_embeddings", "movie_embeddings", "user_biases", "movie_biases")
"""The model's arrays, each stored as ``<name>.npy``, in :class:`MFModel`'s order."""
FileWriter = Callable[[Path], None]


class BundleError(ValueError):
    """A bundle is missing, corrupt or inconsistent; the message names the file."""


def utc_now() -> str:
    """The current UTC time as an ISO-8601 string (seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def npy_writer(array: np.ndarray) -> FileWriter:
    """A writer of ``array`` as a plain ``.npy`` file."""
    if array.dtype.hasobject:
        raise BundleError("refusing to write an object array: bundles never hold pickles")
    return lambda path: np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def json_writer(obj: Any) -> FileWriter:
    """A writer of ``obj`` as strict JSON (see :func:`strict_json`)."""
    return lambda path: path.write_text(strict_json(obj, path.name) + "\n", encoding="utf-8")


def bytes_writer(data: bytes) -> FileWriter:
    """A writer of raw bytes."""
    return lambda path: path.write_bytes(data)


def movies_writer(movies: pd.DataFrame) -> FileWriter:
    """A writer of the movie table (:data:`MOVIE_COLUMNS`)."""
    return lambda path: movies.loc[:, list(MOVIE_COLUMNS)].to_parquet(path, index=False)


def seen_writer(matrix: sp.spmatrix) -> FileWriter:
    """A writer of the training-ratings CSR matrix (not deflated: every server start reads it)."""
    return lambda path: sp.save_npz(path, sp.csr_matrix(matrix), compressed=False)


def strict_json(obj: Any, name: str) -> str:
    """``obj`` as indented JSON; BundleError naming the file ``name`` and the key of a NaN or infinity."""
    try:
        return json.dumps(obj, indent=2, allow_nan=False)
    except ValueError:
        key, value = _non_finite(obj) or ("a value", "not finite")
        raise BundleError(f"{name}: {key} is {value}; JSON holds finite numbers only") from None


def _non_finite(obj: Any, key: str = "") -> tuple[str, float] | None:
    """The dotted key and value of the first NaN or infinity in ``obj``, or None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return key, obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list | tuple) else ()
    return next(filter(None, (_non_finite(v, f"{key}.{k}".lstrip(".")) for k, v in items)), None)


def check_replaceable(dest: Path) -> None:
    """BundleError unless ``dest`` is nothing, an empty folder, a link or a bundle folder that is not a
    version (its first publish keeps it beside as one): published versions never change."""
    if dest.is_symlink() or not os.path.lexists(dest) or (dest.is_dir() and not any(dest.iterdir())):
        return
    if not dest.is_dir():
        raise BundleError(f"{dest}: is a file, not a bundle folder; refusing to replace it")
    if not (dest / MANIFEST).is_file():
        raise BundleError(f"{dest}: is a folder but not a bundle (no {MANIFEST}); refusing to replace it")
    if is_version(dest.name):
        raise BundleError(f"{dest}: is a published version, which never changes: name the link to it")


def write_bundle(dest: str | os.PathLike, files: Mapping[str, FileWriter], manifest: dict) -> Path:
    """Write a new bundle (file name -> writer; manifest fields, to which ``schema_version``, ``created``
    and each file's sha256 and size are added) as a new version ``dest`` leads to; returns ``dest``."""
    dest = Path(os.path.abspath(dest))
    _publish(dest, files, {"schema_version": SCHEMA_VERSION, "created": utc_now(), **manifest})
    return dest


def update_bundle(
    path: str | os.PathLike, files: Mapping[str, FileWriter], updates: Mapping[str, Any]
) -> Path:
    """Add or replace files and manifest fields of the bundle at ``path`` (a link), atomically: a new version,
    its other files hard links to the old one's; returns it. The old version stays until pruned."""
    path = Path(os.path.abspath(path))
    check_replaceable(path)
    old = Bundle.load(path)
    return _publish(path, files, {**old.manifest, **updates, "updated": utc_now()}, old.path)


def _publish(dest: Path, files: Mapping[str, FileWriter], manifest: dict, old: Path | None = None) -> Path:
    """Fill a staging folder (the old version's other files linked in, the manifest last), then publish it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    check_replaceable(dest)
    staged = staging_folder(dest)
    try:
        listed = {name: entry for name, entry in manifest.get("files", {}).items() if name not in files}
        for name in listed:
            os.link(old / name, staged / name)
        for name, write in files.items():
            write(staged / name)
            listed[name] = {"sha256": sha256_file(staged / name), "bytes": (staged / name).stat().st_size}
        json_writer({**manifest, "files": dict(sorted(listed.items()))})(staged / MANIFEST)
        for name in [*files, MANIFEST]:
            with open(staged / name, "rb") as handle:
                os.fsync(handle.fileno())
        check_replaceable(dest)  # again: it may have changed while the files were written
        return publish(staged, dest)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def _open(folder: Path, name: str) -> IO[bytes]:
    """The regular file ``name`` of ``folder``, opened never through a link nor blocking on a FIFO."""
    try:
        fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        reason = {errno.ELOOP: "is a symbolic link, not a regular file", errno.ENOENT: "missing"}
        raise BundleError(f"{name}: {reason.get(err.errno, err.strerror)} ({folder})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BundleError(f"{name}: not a regular file")
    return os.fdopen(fd, "rb")


def strict_loads(data: bytes, name: str) -> Any:
    """Strict JSON (no NaN, infinity or float overflow) from ``data``; BundleError naming the file."""

    def refuse(text: str) -> float:
        raise BundleError(f"{name}: {text[:40]} is not a finite number; JSON holds finite numbers only")

    finite = lambda text: value if math.isfinite(value := float(text)) else refuse(text)  # noqa: E731
    try:
        return json.loads(data, parse_constant=refuse, parse_float=finite)
    except BundleError:
        raise
    except (ValueError, RecursionError) as err:
        raise BundleError(f"{name}: not valid JSON ({shorten(str(err), 80)})") from None


def _validated(schema: TypeAdapter, value: Any, name: str) -> Any:
    """``value`` checked by ``schema``; BundleError naming the file, the first bad entry and its value."""
    try:
        return schema.validate_python(value)
    except ValidationError as err:
        error = err.errors(include_url=False)[0]
    shown = "" if error["type"] == "missing" else f", got {shorten(json.dumps(error['input'], default=str))}"
    message = re.sub(r" or instance of \w+", "", error["msg"])  # a class name means nothing to a reader
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
    raise BundleError(f"{name}: {where or 'the file'}: {message}{shown}")


_MANIFEST, _CLUSTERS = TypeAdapter(Manifest), TypeAdapter(list[ClusterSummary])


def _read(folder: Path, name: str, sha256: str | None, mmap: bool) -> Any:
    """The listed file ``name``, its checksum verified (unless ``sha256`` is None), parsed: an array (mapped
    with ``mmap``), the movie table, the CSR matrix, JSON, or None for the files readers take as bytes."""
    with _open(folder, name) as handle:
        if sha256 is not None and hashlib.file_digest(handle, "sha256").hexdigest() != sha256:
            raise BundleError(f"{name}: checksum mismatch (the file changed after the bundle was written)")
        handle.seek(0)
        try:
            if name.endswith(".npy"):  # np.asarray: a memory map as a plain ndarray over the same pages
                return np.asarray(np.load(folder / name if mmap else handle, "r" if mmap else None, False))
            if name == SEEN_FILE:
                seen = sp.load_npz(handle)
                if seen.format != "csr":
                    raise ValueError(f"a {seen.format} matrix, expected csr")
                seen.check_format(full_check=True)  # indptr monotone, indices within the movies
                return seen
            if name == MOVIES_FILE:
                return pd.read_parquet(handle)
            return strict_loads(handle.read(), name) if name.endswith(".json") else None
        except BundleError:
            raise
        except Exception as err:  # numpy, pyarrow and scipy raise many types for a damaged file
            raise BundleError(f"{name}: unreadable ({shorten(str(err), 200)})") from None


def _check_array(name: str, array: np.ndarray, sizes: dict[str | None, int]) -> None:
    """``array`` against :data:`ARRAYS` and :data:`RANGES`; records the sizes it is first to name."""
    dtype, shape, _ = ARRAYS[name]
    if array.dtype != np.dtype(dtype) or array.ndim != len(shape):
        found = f"{array.dtype} {array.shape}"
        raise BundleError(f"{name}: expected {dtype} with {len(shape)} dimension(s), found {found}")
    for axis, (size, found) in enumerate(zip(shape, array.shape, strict=True)):
        expected = sizes.setdefault(size, found) if isinstance(size, str) else size
        if expected not in (None, found):
            raise BundleError(f"{name}: has {found} {'columns' if axis else 'rows'}, expected {expected}")
    if name.endswith("_ids.npy") and len(np.unique(array)) != len(array):
        raise BundleError(f"{name}: ids are not unique")
    if name != "similar_scores.npy" and array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BundleError(f"{name}: contains NaN or infinite values")
    low, size = RANGES.get(name, (0, None))
    high = sizes.get(size, 0)
    if size and array.size and (array.min() < low or array.max() >= high):
        found = f"{array.min()}..{array.max()}"
        raise BundleError(f"{name}: values must be from {low} to {high - 1} ({size}), found {found}")


@dataclass
class Bundle:
    """A loaded, verified bundle: its ``model`` (row ``r`` of the user arrays is user ``user_ids[r]``), the
    movie table, the training ratings ``seen`` (CSR users x movies), the manifest, and every listed ``.npy``
    and ``.json`` file parsed and checked (``content``; read-only memory maps with ``load(mmap=True)``)."""

    path: Path
    manifest: dict
    model: MFModel
    movies: pd.DataFrame
    seen: sp.csr_matrix
    content: dict[str, Any] = field(default_factory=dict, repr=False)

    rating_scale = property(lambda self: self.model.rating_scale, doc="(lowest, highest) rating.")
    user_vocab = property(lambda self: self.model.user_vocab, doc="User id <-> row.")
    movie_vocab = property(lambda self: self.model.movie_vocab, doc="Movie id <-> row.")
    user_ids = property(lambda self: self.model.user_vocab.ids, doc="User ids in row order.")
    movie_ids = property(lambda self: self.model.movie_vocab.ids, doc="Movie ids in row order.")
    dim = property(lambda self: self.model.dim, doc="Embedding size d.")

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

    json = array  # a listed .json file, as parsed and checked at load

    def read_bytes(self, name: str) -> bytes:
        """A listed file's bytes, checked again against its checksum: still the file that was verified."""
        try:
            with _open(self.path, self.file(name).name) as handle:
                data = handle.read()
        except (BundleError, OSError) as err:
            raise BundleError(f"{name}: unreadable after the bundle was loaded ({err})") from None
        if hashlib.sha256(data).hexdigest() != self.manifest["files"][name]["sha256"]:
            raise BundleError(f"{name}: checksum mismatch (the file changed after the bundle was loaded)")
        return data

    def implicit_rows(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The users' implicit rows per movie, or None when the model has no implicit part."""
        both = self.has(IMPLICIT_EMBEDDINGS) and self.has(IMPLICIT_BIASES)
        return (self.content[IMPLICIT_EMBEDDINGS], self.content[IMPLICIT_BIASES]) if both else None

    def relevance(self) -> RelevanceModel | None:
        """The relevance model (embedder/relevance.py), or None in a bundle trained before it existed."""
        if not all(self.has(name) for name in RELEVANCE_FILES) or not self.manifest.get("relevance"):
            return None
        info = self.manifest["relevance"]
        arrays = (self.content[name] for name in RELEVANCE_FILES)
        return RelevanceModel(*arrays, info["rating_weight"], info["regularization"])

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = True, mmap: bool = False) -> Bundle:
        """Load the bundle at ``path`` (a folder or a link to one), checked whole; ``verify``: every file's
        sha256; ``mmap``: read-only memory maps of the arrays. :class:`BundleError` names the bad file."""
        try:
            folder = Path(path).resolve(strict=True)
        except (OSError, RuntimeError) as err:  # missing, or a loop of links
            hint = "train one: python -m embedder train"
            raise BundleError(f"{path}: no bundle folder there ({err}); {hint}") from None
        if not folder.is_dir():
            raise BundleError(f"{path}: no bundle folder there, a file")
        with _open(folder, MANIFEST) as handle:
            manifest = strict_loads(handle.read(), MANIFEST)
        if not isinstance(manifest, dict):
            raise BundleError(f"{MANIFEST}: must be a JSON object, got {type(manifest).__name__}")
        if (version := manifest.get("schema_version")) != SCHEMA_VERSION:
            raise BundleError(f"{MANIFEST}: schema_version {version!r}, this code reads 1")
        _validated(_MANIFEST, manifest, MANIFEST)
        listed = manifest["files"]
        if missing := [name for name in REQUIRED if name not in listed]:
            raise BundleError(f"{missing[0]}: not listed in {MANIFEST}")
        if odd := [name for name in listed if Path(name).name != name or name in (".", "..", MANIFEST)]:
            raise BundleError(f"{shorten(odd[0], 80)}: file names in {MANIFEST} must be plain names")
        scale = manifest["rating_scale"]
        if not scale[0] < scale[1]:
            raise BundleError(f"{MANIFEST}: rating_scale must be [lowest, highest], got {scale}")
        reads = [name for name in listed if verify or name.endswith((".npy", ".json")) or name in REQUIRED]
        checksum = lambda name: listed[name]["sha256"] if verify else None
        content = {name: _read(folder, name, checksum(name), mmap) for name in reads}
        # Every file parsed and checked alone; now whether they agree with each other.
        sizes: dict[str | None, int] = {}
        if CLUSTERS_FILE in content:
            for at, summary in enumerate(_validated(_CLUSTERS, content[CLUSTERS_FILE], CLUSTERS_FILE)):
                if summary.cluster != at:
                    wrong = f"[{at}].cluster must be its position, {at}, got {summary.cluster}"
                    raise BundleError(f"{CLUSTERS_FILE}: {wrong}")
            sizes["clusters"] = len(content[CLUSTERS_FILE])
        for name in [name for name in ARRAYS if name in content]:
            _check_array(name, content[name], sizes)
        movies, seen = content.pop(MOVIES_FILE), content.pop(SEEN_FILE)
        if missing := [column for column in MOVIE_COLUMNS if column not in movies.columns]:
            raise BundleError(f"{MOVIES_FILE}: missing columns {missing}")
        if not np.array_equal(movies["movie_id"].to_numpy(), content["movie_ids.npy"]):
            raise BundleError(f"{MOVIES_FILE}: rows do not match movie_ids.npy")
        if seen.shape != (expected := (sizes["users"], sizes["movies"])):
            raise BundleError(f"{SEEN_FILE}: shape {seen.shape}, expected {expected}")
        arrays = [content[f"{name}.npy"] for name in PARAMETERS]
        vocab = (Vocabulary(content[f"{kind}_ids.npy"], kind) for kind in ("user", "movie"))
        model = MFModel(float(manifest["global_mean"]), *arrays, tuple(map(float, scale)), *vocab)
        return cls(folder, manifest, model, movies, seen, content)
