"""The one exact top-K: every ranked answer goes through :func:`select_topk`.

The select splits each row into strided groups whose maxima come from one element-wise ``max``; the k-th
largest group maximum bounds the row's k-th best from below, so only the few groups reaching it are
gathered and sorted. Ties go to the lower column; ``-inf`` is never returned."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

USER_BLOCK = 512
"""Query rows per GEMM: the score block stays a few hundred MB at ML-25M's 59k movies."""
N_GROUPS = 512
"""Strided groups per row in the select: many more than k keeps the gathered part small."""


def select_topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise exact top-``k`` of a 2-D score array (``-inf`` = excluded), best first: ``(columns int64,
    scores float32)`` of shape ``(rows, min(k, n_cols))``, padded with column -1 and score ``-inf``."""
    m, n = scores.shape
    k = min(k, n)
    n_groups = min(N_GROUPS, n)
    if n_groups <= 4 * k:  # few columns per k: every finite entry is a candidate
        rows, cols = np.nonzero(scores > -np.inf)
        return _pick(scores, rows, cols, k)
    slabs = n // n_groups
    head = scores[:, : slabs * n_groups].reshape(m, slabs, n_groups)
    group_max = head.max(axis=1)
    bound = np.partition(group_max, n_groups - k, axis=1)[:, n_groups - k]  # k groups reach it
    rows, groups = np.nonzero(group_max >= bound[:, None])
    p, s = np.nonzero(head[rows, :, groups] >= bound[rows, None])
    t_rows, t_cols = np.nonzero(scores[:, slabs * n_groups :] >= bound[:, None])  # after the last whole slab
    cand_rows = np.concatenate([rows[p], t_rows])
    cand_cols = np.concatenate([s * n_groups + groups[p], t_cols + slabs * n_groups])
    return _pick(scores, cand_rows, cand_cols, k)


def _pick(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best candidate (row, column) pairs per row: by score, then column."""
    vals = scores[rows, cols]
    finite = vals > -np.inf  # a bound of -inf (too few finite groups) lets excluded entries in
    rows, cols, vals = rows[finite], cols[finite], vals[finite]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, np.arange(scores.shape[0]))[rows]
    keep = rank < k
    out_cols = np.full((scores.shape[0], k), -1, np.int64)
    out_vals = np.full((scores.shape[0], k), -np.inf, np.float32)
    out_cols[rows[keep], rank[keep]] = cols[keep]
    out_vals[rows[keep], rank[keep]] = vals[keep]
    return out_cols, out_vals


def top_k(
    queries: np.ndarray,
    items: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    banned: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` columns of ``queries @ items.T`` per query row, best first (:func:`select_topk`);
    ``exclude``'s stored entries (CSR, queries x items) and the ``banned`` columns are left out."""
    n = len(items)
    width = min(k, n)
    out_cols = np.empty((len(queries), width), np.int64)
    out_vals = np.empty((len(queries), width), np.float32)
    buffer = np.empty((min(USER_BLOCK, len(queries)), n), np.float32)  # reused: a fresh one page-faults
    for s in range(0, len(queries), USER_BLOCK):
        e = min(s + USER_BLOCK, len(queries))
        scores = np.matmul(queries[s:e], items.T, out=buffer[: e - s])
        if exclude is not None:
            lo, hi = exclude.indptr[s], exclude.indptr[e]
            rows = np.repeat(np.arange(e - s), np.diff(exclude.indptr[s : e + 1]))
            scores.reshape(-1)[rows * n + exclude.indices[lo:hi]] = -np.inf
        if banned is not None:
            scores[:, banned] = -np.inf
        out_cols[s:e], out_vals[s:e] = select_topk(scores, k)
    return out_cols, out_vals
