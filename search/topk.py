"""Exact top-K by inner product, with per-query exclusion, fast enough for all users.

The work no exact method can skip is the user-by-movie product itself, so the
design keeps everything else small beside it:

* **Tiles that stay in cache.**  Users are taken ``user_block`` at a time and
  movies ``item_block`` at a time; one tile of scores is written by the GEMM and
  read back while it is still in cache.  A full ``users x movies`` block would
  go to memory and back: memory-bound, several times slower than the arithmetic.
* **Seen movies masked in place.**  The CSR entries of the block's users that fall
  in the tile are set to ``-inf`` with one vectorised scatter; no dense masks.
* **Most rows of most tiles are never scanned.**  One SIMD pass takes each
  row's maximum; a row whose maximum cannot beat its current k-th best (the top
  of its heap) is skipped.  A lower bound of each row's final k-th best, from
  the ``head_size`` movies the average query likes most (scored first), makes
  that happen from the first tiles on: on rating data, whose scores share a
  strong per-movie bias, a tile rarely holds a newcomer to a user's top k.
* **faiss's C++ heaps for the rows that are scanned**
  (``float_minheap_array_t.addn_with_ids``, or ``addn_query_subset_with_ids``
  on the gathered rows): one compare per score, no sort, no temporary arrays.
* **One worker thread per core**, each running single-threaded BLAS and a
  single-threaded heap.  Letting OpenBLAS (pthreads) and faiss (OpenMP) each spin
  up their own pool on every tile makes them fight over the same cores.

Skipping only scores that the heap would reject anyway keeps the result exact.
Ties are broken by catalogue row everywhere (the row listed first wins, also at
the k-th place), so the single-user path (numpy) and the batch path (heaps)
return the same movies.  To get that from the heap, which evicts the *smallest*
id among equal scores, columns enter it under the reversed id ``n - column``.

Tested against brute-force numpy in ``tests/search/test_topk.py``.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import faiss
import numpy as np
import scipy.sparse as sp

from search.validate import check_int, check_k

# Chosen by measurement (benchmarks/retrieval.py --tiles, 60k movies, d=66, 2 cores):
# a 1024 x 512 float32 tile (2 MiB) keeps the GEMM at full speed and stays in
# cache for the row maxima; narrower tiles let more rows be skipped.
USER_BLOCK = 1024
ITEM_BLOCK = 512
HEAD_SIZE = 512
# A tile whose rows mostly need scanning is scanned whole (no gather copy).
DENSE_ROWS = 0.6


def topk_1d(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best entries of one score vector, best first.

    ``-inf`` marks an excluded entry and is never returned, so the result may be
    shorter than ``k``.  Ties are broken by the lower index, also at the k-th place.

    Returns
    -------
    (indexes int64, scores float32)
    """
    scores = np.asarray(scores)
    n = scores.shape[0]
    k = min(k, n)
    # np.partition on values is 4x faster than argpartition; the k-th value then
    # selects the winners (and any ties with it) in one more pass.
    threshold = np.partition(scores, n - k)[n - k] if 0 < k < n else -np.inf
    chosen = np.flatnonzero(scores >= threshold) if threshold > -np.inf else np.flatnonzero(scores > -np.inf)
    best = scores[chosen]
    order = np.lexsort((chosen, -best))[:k]
    return chosen[order].astype(np.int64, copy=False), best[order].astype(np.float32, copy=False)


def topk_rows(scores: np.ndarray, k: int, columns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-``k`` of a small 2-D score array (ANN re-scoring), padded.

    ``columns`` (same shape as ``scores``, default the column number) is what is
    returned for each score and breaks ties (lower first).  Rows with fewer than
    ``k`` finite scores are padded with column -1 and score ``-inf``.
    """
    n_cols = scores.shape[1]
    if columns is None:
        columns = np.broadcast_to(np.arange(n_cols), scores.shape)
    order = np.lexsort((columns, -scores), axis=-1)[:, :k]
    best = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    cols = np.take_along_axis(columns, order, axis=1).astype(np.int64)
    cols[~np.isfinite(best)] = -1
    best[cols < 0] = -np.inf
    if best.shape[1] < k:
        pad = k - best.shape[1]
        best = np.pad(best, ((0, 0), (0, pad)), constant_values=-np.inf)
        cols = np.pad(cols, ((0, 0), (0, pad)), constant_values=-1)
    return cols, best


# --------------------------------------------------------------------------- threads

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_local = threading.local()


def n_threads() -> int:
    """Worker threads used by the blocked search: one per available core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _init_worker() -> None:
    # omp_set_num_threads sets the calling thread's own OpenMP setting, so this
    # keeps the heaps of this worker single-threaded and leaves the rest of the
    # process (e.g. faiss index searches from web threads) alone.
    faiss.omp_set_num_threads(1)


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(n_threads(), thread_name_prefix="search-topk", initializer=_init_worker)
        return _pool


def _tile_buffers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Two float32 scratch buffers owned by the calling thread, reused between tiles.

    Allocating megabytes per tile would go through mmap and pay a page fault
    per 4 KiB every time.
    """
    bufs = getattr(_local, "buffers", None)
    if bufs is None or bufs[0].size < size:
        bufs = _local.buffers = (np.empty(size, dtype=np.float32), np.empty(size, dtype=np.float32))
    return bufs


class _SingleThreadedBlas:
    """Process-wide 'BLAS uses one thread' while at least one blocked search runs.

    threadpoolctl's limit is global; a counter makes nested or concurrent searches
    restore the original setting only when the last one ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._limiter = None
        self._controller = None

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                if self._controller is None:
                    from threadpoolctl import (
                        ThreadpoolController,  # scans loaded libraries once
                    )

                    self._controller = ThreadpoolController()
                self._limiter = self._controller.limit(limits=1, user_api="blas")
            self._depth += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._limiter is not None:
                self._limiter.restore_original_limits()
                self._limiter = None


single_threaded_blas = _SingleThreadedBlas()


# --------------------------------------------------------------------------- blocked search


def _heaps(vals: np.ndarray, ids: np.ndarray) -> faiss.float_minheap_array_t:
    """faiss min-heaps (keep the largest) living in the C-contiguous ``vals``/``ids`` rows.

    The heaps hold raw pointers: the caller must keep both arrays alive while using them.
    """
    heaps = faiss.float_minheap_array_t()
    heaps.nh, heaps.k = vals.shape
    heaps.val = faiss.swig_ptr(vals)
    heaps.ids = faiss.swig_ptr(ids)
    heaps.heapify()
    return heaps


class _Call:
    """What one search call shares between its user blocks (read-only)."""

    def __init__(self, engine: BlockedTopK, queries: np.ndarray, k: int, indptr, indices):
        self.queries, self.k, self.indptr, self.indices = queries, k, indptr, indices
        self.head = self.head_t = self.head_pos = None
        # The head costs n_head / n_items of the GEMM: keep it around 3% or less.
        n_head = min(engine.head_size, engine.n_items // 32)
        if n_head >= 2 * k and len(queries):
            # The movies the average query scores highest: their k-th best score is
            # a lower bound of each row's final k-th best, known before the scan.
            typical = engine.items_t.T @ queries.mean(axis=0)
            self.head = np.sort(np.argpartition(typical, engine.n_items - n_head)[engine.n_items - n_head :])
            self.head_t = np.ascontiguousarray(engine.items_t[:, self.head])
            self.head_pos = np.full(engine.n_items, -1, np.int64)
            self.head_pos[self.head] = np.arange(n_head)


class BlockedTopK:
    """Exact top-K of ``queries @ items.T`` per query row, with exclusions.

    Parameters
    ----------
    items:
        float32 ``(n_items, dim)``; for recommendations the bias-augmented movie rows.
    user_block, item_block:
        Tile shape (queries x items) of one GEMM + top-K step.
    head_size:
        Movies scored first to get a lower bound of each row's k-th best score
        (0 turns it off; it is skipped for small catalogues anyway).

    For each tile, one SIMD pass takes each row's maximum; a row whose maximum
    cannot beat its current k-th best (the heap's top) nor the lower bound is
    not scanned at all.  On rating data, whose scores share a strong per-movie
    bias, most rows of most tiles are skipped after the first few.  Skipping
    only rows that the heap would reject anyway keeps the result exact.

    The object holds no per-call state, so one instance serves many threads.
    """

    def __init__(
        self, items: np.ndarray, *, user_block: int = USER_BLOCK, item_block: int = ITEM_BLOCK, head_size: int = HEAD_SIZE
    ):
        items = np.asarray(items, dtype=np.float32)
        if items.ndim != 2:
            raise ValueError(f"items must be 2-D, got shape {items.shape}")
        self.n_items, self.dim = items.shape
        # (dim, n) so that a column tile is a plain strided slice for BLAS.
        self.items_t = np.ascontiguousarray(items.T)
        self.user_block = int(user_block)
        self.item_block = max(1, min(int(item_block), self.n_items))
        self.head_size = int(head_size)
        # Reversed ids make the heap keep the lowest column among equal scores.
        self._heap_ids = np.arange(self.n_items, 0, -1, dtype=np.int64)
        # Two float32 evaluations of one inner product in different summation
        # orders differ by at most 2 * dim * eps * |y| * |x| (Cauchy-Schwarz on the
        # sum of |terms|); lower bounds from the head are lowered by this much.
        self._max_item_norm = float(np.linalg.norm(items, axis=1).max()) if self.n_items else 0.0

    # ---- public

    def search(self, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` columns and scores for every query row, best first.

        Parameters
        ----------
        queries:
            float32 ``(n_queries, dim)``.
        k:
            Results per row; at most ``n_items`` are returned.
        exclude:
            Optional CSR ``(n_queries, n_items)``; its stored entries are never
            returned for that row (the values are ignored).

        Returns
        -------
        (columns int64, scores float32), both ``(n_queries, min(k, n_items))``;
        a row with fewer candidates is padded with column -1 and score ``-inf``.
        """
        queries = self._check_queries(queries)
        k = check_k(k)
        width = min(k, self.n_items)
        scores = np.empty((len(queries), width), np.float32)
        cols = np.empty((len(queries), width), np.int64)
        for start, block_cols, block_scores in self.iter_search(queries, k, exclude, batch_size=max(1, len(queries))):
            cols[start : start + len(block_cols)] = block_cols
            scores[start : start + len(block_cols)] = block_scores
        return cols, scores

    def iter_search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None = None,
        batch_size: int = 4096,
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Stream :meth:`search` results as ``(first_row, columns, scores)`` blocks.

        Blocks come in row order, ``batch_size`` rows each (the last may be
        shorter).  The next block is computed while the caller handles this one.
        """
        queries = self._check_queries(queries)
        k = min(check_k(k), self.n_items)
        batch_size = check_int(batch_size, "batch_size", 1)
        indptr, indices = self._check_exclude(exclude, len(queries))
        n = len(queries)
        if k == 0:  # an empty catalogue (e.g. no movie has min_ratings): empty rows
            for start in range(0, n, batch_size):
                rows = min(batch_size, n - start)
                yield start, np.empty((rows, 0), np.int64), np.empty((rows, 0), np.float32)
            return
        call = _Call(self, queries, k, indptr, indices)
        pool = _get_pool()
        pending: deque[tuple[int, np.ndarray, np.ndarray, list[Future]]] = deque()

        def submit(start: int) -> None:
            stop = min(start + batch_size, n)
            vals = np.empty((stop - start, k), np.float32)
            ids = np.empty((stop - start, k), np.int64)
            # A small batch is still split so that every core gets a share.
            step = max(1, min(self.user_block, -(-(stop - start) // n_threads())))
            futures = [
                pool.submit(self._block, call, s, min(s + step, stop), vals[s - start : stop - start], ids[s - start : stop - start])
                for s in range(start, stop, step)
            ]
            pending.append((start, ids, vals, futures))

        with single_threaded_blas:
            try:
                for start in range(0, n, batch_size):
                    submit(start)
                    if len(pending) > 1:  # keep one batch in flight while yielding
                        yield self._finish(*pending.popleft())
                while pending:
                    yield self._finish(*pending.popleft())
            finally:
                for *_, futures in pending:  # the caller stopped early: drain
                    for future in futures:
                        future.cancel()
                    for future in futures:
                        if not future.cancelled():
                            future.exception()

    # ---- internals

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (n, {self.dim}), got {queries.shape}")
        return queries

    def _check_exclude(self, exclude: sp.csr_matrix | None, n_queries: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        if exclude is None:
            return None, None
        exclude = sp.csr_matrix(exclude)
        if exclude.shape != (n_queries, self.n_items):
            raise ValueError(f"exclude must have shape {(n_queries, self.n_items)}, got {exclude.shape}")
        # indices stay in their own dtype: converting 25M int32 to int64 costs a copy
        return exclude.indptr.astype(np.int64, copy=False), exclude.indices

    def _finish(self, start: int, ids: np.ndarray, vals: np.ndarray, futures: list[Future]) -> tuple[int, np.ndarray, np.ndarray]:
        for future in futures:
            future.result()  # re-raise a worker's error here
        found = ids >= 0
        cols = np.where(found, self.n_items - ids, -1)
        vals[~found] = -np.inf  # the heap's empty slots hold -FLT_MAX
        return start, cols, vals

    def _excluded(self, call: _Call, s: int, e: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(rows relative to s, columns) of the excluded entries of query rows s..e."""
        if call.indptr is None or call.indptr[e] == call.indptr[s]:
            return None
        rows = np.repeat(np.arange(e - s, dtype=np.int64), np.diff(call.indptr[s : e + 1]))
        return rows, call.indices[call.indptr[s] : call.indptr[e]]

    def _mask_plan(self, excluded: tuple[np.ndarray, np.ndarray] | None):
        """Flat positions to set to -inf, grouped by tile: (positions, bounds)."""
        if excluded is None:
            return None
        rows, cols = excluded
        tile = cols // self.item_block
        n_tiles = -(-self.n_items // self.item_block)
        width = np.minimum(self.item_block, self.n_items - tile * self.item_block)
        positions = rows * width + (cols - tile * self.item_block)
        if n_tiles == 1:
            return positions, np.array([0, positions.size])
        # A stable sort of small unsigned ints is numpy's radix sort: linear time.
        key = tile.astype(np.uint16 if n_tiles < 1 << 16 else np.uint32)
        order = np.argsort(key, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(key, minlength=n_tiles))])
        return positions[order], bounds

    def _lower_bounds(self, call: _Call, queries: np.ndarray, excluded) -> np.ndarray:
        """Per row, a value that at least k unexcluded scores reach (-inf if unknown).

        Compared with ``>=``: a movie scoring below it can never be in the top k.
        """
        if call.head is None:
            return np.full(len(queries), -np.inf, np.float32)
        head = queries @ call.head_t
        if excluded is not None:
            rows, cols = excluded
            pos = call.head_pos[cols]
            hit = pos >= 0
            head[rows[hit], pos[hit]] = -np.inf
        # The k-th best of each row from a throw-away heap: 5x cheaper than np.partition.
        kth = np.empty((len(queries), call.k), np.float32)
        kth_ids = np.empty(kth.shape, np.int64)  # named: the heaps point into it
        heaps = _heaps(kth, kth_ids)
        heaps.addn(head.shape[1], faiss.swig_ptr(head), 0)
        bound = kth[:, 0]  # the top of a min-heap: -FLT_MAX when fewer than k are finite
        margin = 2 * self.dim * np.finfo(np.float32).eps * np.linalg.norm(queries, axis=1) * self._max_item_norm
        return (bound - margin).astype(np.float32)

    def _block(self, call: _Call, s: int, e: int, vals: np.ndarray, ids: np.ndarray) -> None:
        """Top-k of query rows s..e into ``vals``/``ids`` (views into the batch)."""
        nb = e - s
        vals, ids = vals[:nb], ids[:nb]
        queries = call.queries[s:e]
        heaps = _heaps(vals, ids)
        excluded = self._excluded(call, s, e)
        plan = self._mask_plan(excluded)
        # "can beat": > max(heap top, lower bound - 1 ulp), i.e. beats the top and
        # reaches the bound.  vals[:, 0] is each heap's top, updated in place.
        bound = np.nextafter(self._lower_bounds(call, queries, excluded), np.float32(-np.inf))
        top = vals[:, 0]
        need = np.empty(nb, np.float32)
        buf, gather = _tile_buffers(nb * self.item_block)
        for t, j0 in enumerate(range(0, self.n_items, self.item_block)):
            j1 = min(j0 + self.item_block, self.n_items)
            width = j1 - j0
            tile = buf[: nb * width].reshape(nb, width)
            np.matmul(queries, self.items_t[:, j0:j1], out=tile)
            if plan is not None and plan[1][t + 1] > plan[1][t]:
                tile.reshape(-1)[plan[0][plan[1][t] : plan[1][t + 1]]] = -np.inf
            np.maximum(top, bound, out=need)
            rows = np.flatnonzero(tile.max(axis=1) > need)
            heap_ids = faiss.swig_ptr(self._heap_ids[j0:j1])
            if len(rows) > DENSE_ROWS * nb:
                heaps.addn_with_ids(width, faiss.swig_ptr(tile), heap_ids, 0)
            elif len(rows):
                picked = gather[: len(rows) * width].reshape(len(rows), width)
                np.take(tile, rows, axis=0, out=picked)
                heaps.addn_query_subset_with_ids(len(rows), faiss.swig_ptr(rows), width, faiss.swig_ptr(picked), heap_ids, 0)
        heaps.reorder()
