"""FAISS indexes over the bias-augmented movie rows: build, tune, store, load, search.

``flat`` is exact; ``hnsw`` and ``ivf`` are approximate. Inner product is not a metric, so their search depth
is chosen at build time by *measured* recall@10 against exact search. Stored with ``faiss.serialize_index``
(no pickle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from embedder.bundle import BundleError

INDEX_KINDS = ("flat", "hnsw", "ivf")
INDEX_FILE = "movie_index.faiss"
COSINE_INDEX_FILE = "cosine_index.faiss"
EF_LADDER = (16, 32, 64, 128, 256, 512, 1024, 2048)
"""HNSW search depths tried, smallest first, until the measured recall reaches the target."""
HNSW_M, EF_CONSTRUCTION = 32, 200


@dataclass(frozen=True)
class IndexConfig:
    """How ``python -m search build`` makes the movie index: ``kind`` ``flat`` (exact), ``hnsw`` or ``ivf``
    (about ``sqrt(n_movies)`` lists), searched deeper until recall@10 reaches ``target_recall``."""

    kind: str = "flat"
    target_recall: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"index kind must be one of {', '.join(INDEX_KINDS)}, got {self.kind!r}")


def build_index(vectors: np.ndarray, config: IndexConfig) -> faiss.Index:
    """An inner-product index over ``vectors`` (float32 rows), trained and filled."""
    vectors = np.ascontiguousarray(vectors, np.float32)
    n, dim = vectors.shape
    if config.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif config.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
    else:
        nlist = max(1, min(round(math.sqrt(n)), n // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = config.seed
        index.train(vectors)
    index.add(vectors)
    return index


def apply_params(index: faiss.Index, params: dict[str, Any]) -> None:
    """Set the search depth recorded in the manifest (``efSearch`` or ``nprobe``) on a loaded index."""
    for name in params.keys() & {"efSearch", "nprobe"}:
        faiss.ParameterSpace().set_index_parameter(index, name, int(params[name]))


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each row of ``exact`` ids (-1 = none) present in ``found``."""
    hits = sum(np.isin(e[e >= 0], f).sum() for f, e in zip(found, exact))
    total = int((exact >= 0).sum())
    return float(hits / total) if total else 1.0


def tune_index(
    index: faiss.Index, queries: np.ndarray, exact_ids: np.ndarray, target: float
) -> dict[str, Any]:
    """Raise the search depth until recall@k against ``exact_ids`` reaches ``target``; returns the chosen
    parameters with the measured recall (an exact index: ``{"recall_at_10": 1.0}`` without searching)."""
    k = exact_ids.shape[1]
    if isinstance(index, faiss.IndexHNSW):
        ladder = [{"efSearch": ef} for ef in EF_LADDER if ef >= k] or [{"efSearch": k}]
    elif isinstance(index, faiss.IndexIVF):
        probes = np.minimum(2 ** np.arange(int(math.log2(index.nlist)) + 2), index.nlist)
        ladder = [{"nprobe": int(p)} for p in np.unique(probes)]
    else:
        return {f"recall_at_{k}": 1.0}
    for params in ladder:
        apply_params(index, params)
        recall = recall_at(index.search(np.ascontiguousarray(queries, np.float32), k)[1], exact_ids)
        if recall >= target:
            break
    if isinstance(index, faiss.IndexIVF):
        params["nlist"] = int(index.nlist)
    return {**params, f"recall_at_{k}": round(recall, 4)}


def index_bytes(index: faiss.Index) -> bytes:
    """The index serialised by faiss (no pickle)."""
    return faiss.serialize_index(index).tobytes()


def read_index(content: bytes, name: str = INDEX_FILE) -> faiss.Index:
    """An index written by :func:`index_bytes`, from the file's verified content."""
    try:
        return faiss.deserialize_index(np.frombuffer(content, np.uint8))
    except RuntimeError as err:  # faiss's message for a damaged file
        raise BundleError(f"{name}: not a faiss index ({str(err).splitlines()[0][:200]})") from err


def search_candidates(
    index: faiss.Index, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> np.ndarray:
    """Approximate top-``k`` rows per query (-1 where fewer were found), only among the ``allowed`` rows
    (bool per row) when given. The search depth is raised to at least ``k`` for this call only."""
    if isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=max(int(index.hnsw.efSearch), k))
    elif isinstance(index, faiss.IndexIVF):
        params = faiss.SearchParametersIVF(nprobe=int(index.nprobe))
    else:
        params = faiss.SearchParameters()
    if allowed is not None:
        bitmap = np.packbits(allowed.astype(np.uint8), bitorder="little")  # must outlive the search
        params.sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
    return index.search(np.ascontiguousarray(queries, np.float32), min(k, index.ntotal), params=params)[1]
