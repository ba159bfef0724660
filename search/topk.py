"""Exact top-K by inner product with per-query exclusion: one GEMM and one select per user block.

For a block of query rows the scores are one float32 GEMM into a reused
buffer; the excluded (CSR) entries are set to ``-inf`` in that buffer, and
:func:`select_topk` picks each row's ``k`` best.  The select is cheap beside
the GEMM because it reads the scores once: it splits each row into strided
groups (column ``j`` belongs to group ``j % n_groups``), whose maxima come from
one element-wise ``max`` over contiguous slabs.  The k-th largest group maximum
is a lower bound of the row's k-th best score, so only the few groups whose
maximum reaches it are gathered and sorted. With numba installed (extra
``fast``) the same select runs compiled, a row at a time, so that each row is
read from memory once (:mod:`search.compiled_select`); the answers are the same.

Ties go to the lower column everywhere, also at the k-th place, and ``-inf``
(excluded) is never returned: rows with fewer candidates are padded with
column -1 and score ``-inf``.  No thread or BLAS setting is touched: the GEMM
uses whatever BLAS threads the process has.

Tested against brute-force numpy in ``tests/search/test_topk.py``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from search.validate import check_int, check_k

# Query rows per GEMM; chosen with benchmarks/retrieval.py (see benchmarks/README.md).
USER_BLOCK = 512
# Strided groups per row in the select: many more than k keeps the gathered part small.
N_GROUPS = 512
# topk_1d groups a vector in about 128 entries a group, at least 64 and 4k groups, at most this many.
MAX_GROUPS_1D = 1024


def select_topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise exact top-``k`` of a 2-D float32 score array, best first.

    ``-inf`` marks an excluded entry.  Ties go to the lower column.  Returns
    ``(columns int64, scores float32)`` of shape ``(rows, min(k, n_cols))``,
    padded with column -1 and score ``-inf`` where a row has fewer candidates.
    """
    m, n = scores.shape
    k = min(k, n)
    if k == 0 or m == 0:
        return np.full((m, k), -1, np.int64), np.full((m, k), -np.inf, np.float32)
    n_groups = min(N_GROUPS, n)
    compiled = _compiled_select()
    if compiled is not None and scores.dtype == np.float32:
        cols, best = np.empty((m, k), np.int64), np.empty((m, k), np.float32)
        compiled(scores, k, n_groups, cols, best)
        return cols, best
    slabs = n // n_groups
    if n_groups <= 4 * k:  # few columns per k: gathering groups would not save anything
        rows, cols = np.nonzero(scores > -np.inf)
        return _pick(scores, rows, cols, k)
    head = scores[:, : slabs * n_groups].reshape(m, slabs, n_groups)
    group_max = head.max(axis=1)
    # k groups have a maximum >= bound, so the row's k-th best is >= bound too.
    bound = np.partition(group_max, n_groups - k, axis=1)[:, n_groups - k]
    rows, groups = np.nonzero(group_max >= bound[:, None])
    picked = head[rows, :, groups]  # (pairs, slabs)
    p, s = np.nonzero(picked >= bound[rows, None])
    cand_rows, cand_cols = rows[p], s * n_groups + groups[p]
    tail = scores[:, slabs * n_groups :]  # the columns after the last whole slab
    t_rows, t_cols = np.nonzero(tail >= bound[:, None])
    cand_rows = np.concatenate([cand_rows, t_rows])
    cand_cols = np.concatenate([cand_cols, t_cols + slabs * n_groups])
    return _pick(scores, cand_rows, cand_cols, k)


@functools.cache
def _compiled_select() -> Callable | None:
    """The same select compiled with numba (:mod:`search.compiled_select`), when numba
    is installed (extra ``fast``); None otherwise. Imported on first use, so that
    importing ``search`` stays light."""
    try:
        from search.compiled_select import select_rows
    except ImportError:
        return None
    return select_rows


def _pick(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of candidate (row, column) pairs per row: sorted by score, then column."""
    vals = scores[rows, cols]
    finite = vals > -np.inf  # a bound of -inf (too few finite groups) lets excluded entries in
    rows, cols, vals = rows[finite], cols[finite], vals[finite]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(rows, np.arange(scores.shape[0]))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k
    out_cols = np.full((scores.shape[0], k), -1, np.int64)
    out_vals = np.full((scores.shape[0], k), -np.inf, np.float32)
    out_cols[rows[keep], rank[keep]] = cols[keep]
    out_vals[rows[keep], rank[keep]] = vals[keep]
    return out_cols, out_vals


def topk_1d(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best entries of one score vector, best first (``-inf`` = excluded).

    Same rules as :func:`select_topk`, but the result is shorter instead of padded.
    Returns ``(indexes int64, scores float32)``.
    """
    scores = np.asarray(scores, np.float32).reshape(-1)
    n, k = len(scores), min(k, len(scores))
    if k == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    # A lower bound of the k-th best value: the k-th largest maximum of strided
    # groups (k groups reach it), or on a short vector the k-th best itself. Every
    # entry reaching it, a few more than k, is then sorted by score, then index.
    groups = min(MAX_GROUPS_1D, max(64, 4 * k, n // 128))
    if n >= 2 * groups:
        group_max = scores[: n // groups * groups].reshape(-1, groups).max(axis=0)
        bound = np.partition(group_max, groups - k)[groups - k]
    else:
        bound = np.partition(scores, n - k)[n - k]
    cols = np.flatnonzero(scores >= bound if bound > -np.inf else scores > -np.inf)
    cols = cols[np.argsort(-scores[cols], kind="stable")[:k]]  # stable: ties keep the lower index first
    return cols, scores[cols]


def topk_rows(scores: np.ndarray, k: int, columns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-``k`` of a small 2-D score array (ANN re-scoring), padded to ``k``.

    ``columns`` (same shape as ``scores``, default the column number) is what is
    returned for each score and breaks ties (lower first).  Rows with fewer than
    ``k`` finite scores are padded with column -1 and score ``-inf``.
    """
    scores = np.asarray(scores, np.float32)
    if columns is None:
        columns = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    # Sorting each row by its columns makes "lower position" mean "lower column".
    by_column = np.argsort(columns, axis=1, kind="stable")
    columns = np.take_along_axis(columns, by_column, axis=1)
    pos, best = select_topk(np.take_along_axis(scores, by_column, axis=1), k)
    cols = np.where(pos >= 0, np.take_along_axis(columns, np.maximum(pos, 0), axis=1), -1).astype(np.int64)
    pad = k - cols.shape[1]
    if pad > 0:
        cols = np.pad(cols, ((0, 0), (0, pad)), constant_values=-1)
        best = np.pad(best, ((0, 0), (0, pad)), constant_values=-np.inf)
    return cols, best


@contextlib.contextmanager
def _block_runner(workers: int) -> Iterator[Callable]:
    """``map`` for user blocks: the built-in one, or ``workers`` threads that keep
    at most two blocks each in flight (results come back in order)."""
    if workers == 1:
        yield map
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: collections.deque = collections.deque()

        def run(fn: Callable, spans: Iterator) -> Iterator:
            spans = iter(spans)
            for span in itertools.islice(spans, 2 * workers):
                pending.append(pool.submit(fn, span))
            while pending:
                result = pending.popleft().result()
                span = next(spans, None)
                if span is not None:
                    pending.append(pool.submit(fn, span))
                yield result

        try:
            yield run
        finally:
            for future in pending:  # the consumer stopped early: the queued blocks are not wanted
                future.cancel()


class BlockedTopK:
    """Exact top-K of ``queries @ items.T`` per query row, with exclusions.

    Parameters
    ----------
    items:
        float32 ``(n_items, dim)``; for recommendations the bias-augmented movie rows.
    user_block:
        Query rows per GEMM + select step.

    The object holds no per-call state, so one instance serves many threads.
    """

    def __init__(self, items: np.ndarray, *, user_block: int = USER_BLOCK):
        items = np.asarray(items, dtype=np.float32)
        if items.ndim != 2:
            raise ValueError(f"items must be 2-D, got shape {items.shape}")
        self.n_items, self.dim = items.shape
        self.items_t = np.ascontiguousarray(items.T)  # (dim, n): the GEMM's right operand
        self.user_block = check_int(user_block, "user_block", 1)

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
        width = min(check_k(k), self.n_items)
        blocks = list(self.iter_search(queries, k, exclude, batch_size=max(1, len(queries))))
        if not blocks:  # no queries
            return np.empty((0, width), np.int64), np.empty((0, width), np.float32)
        return blocks[0][1], blocks[0][2]

    def iter_search(
        self, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None = None, batch_size: int = 4096, workers: int = 1
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Stream :meth:`search` results as ``(first_row, columns, scores)`` blocks.

        Blocks come in row order, ``batch_size`` rows each (the last may be shorter).
        ``workers`` > 1 searches that many user blocks at once, each in a thread
        with its own score buffer (numpy releases the GIL in the GEMM and the
        select), so one block's select runs while another's GEMM does. BLAS
        threads are left as the caller set them: with several workers, one BLAS
        thread each (``threadpoolctl.threadpool_limits(1, "blas")`` around the
        loop, as ``python -m search recommend-all`` does) keeps the two kinds of
        threads from competing for the cores (benchmarks/README.md, "Retrieval").
        """
        queries = self._check_queries(queries)
        k = min(check_k(k), self.n_items)
        batch_size = check_int(batch_size, "batch_size", 1)
        workers = check_int(workers, "workers", 1)
        exclude = self._check_exclude(exclude, len(queries))
        n = len(queries)
        rows = min(self.user_block, batch_size, max(1, n))
        # (first row of the batch, first row, end) of every block; a block never straddles two batches.
        spans = [(b, s, min(s + rows, b + batch_size, n)) for b in range(0, n, batch_size) for s in range(b, min(b + batch_size, n), rows)]
        buffers = threading.local()

        def block(span: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
            if not hasattr(buffers, "scores"):  # one per thread, reused: a fresh one costs its page faults
                buffers.scores = np.empty((rows, self.n_items), np.float32)
            return self._block(queries, span[1], span[2], k, exclude, buffers.scores)

        parts: list[tuple[np.ndarray, np.ndarray]] = []
        with _block_runner(workers) as run:
            # The workers go on with the next batch's blocks while one is handed out.
            for (first, _, stop), part in zip(spans, run(block, spans)):
                parts.append(part)
                if stop == min(first + batch_size, n):
                    yield first, np.concatenate([c for c, _ in parts]), np.concatenate([v for _, v in parts])
                    parts = []

    def _block(self, queries, s, e, k, exclude, buf):
        """Top-k of query rows s..e: one GEMM into ``buf``, excluded entries to -inf, select."""
        scores = buf[: e - s]
        np.matmul(queries[s:e], self.items_t, out=scores)
        if exclude is not None:
            rows = np.repeat(np.arange(e - s), np.diff(exclude.indptr[s : e + 1]))
            cols = exclude.indices[exclude.indptr[s] : exclude.indptr[e]]
            # Flat positions: one scatter, cheaper than 2-D fancy indexing.
            scores.reshape(-1)[rows * self.n_items + cols] = -np.inf
        return select_topk(scores, k)

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (n, {self.dim}), got {queries.shape}")
        return queries

    def _check_exclude(self, exclude: sp.csr_matrix | None, n_queries: int) -> sp.csr_matrix | None:
        if exclude is None:
            return None
        exclude = sp.csr_matrix(exclude)
        if exclude.shape != (n_queries, self.n_items):
            raise ValueError(f"exclude must have shape {(n_queries, self.n_items)}, got {exclude.shape}")
        return exclude
