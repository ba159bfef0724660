"""The select of :func:`search.topk.select_topk`, compiled with numba (extra ``fast``).

The same algorithm as the numpy select, with the same answer (ties to the lower
column, ``-inf`` never returned, short rows padded), done one row at a time: a
row of scores (236 KB for 59,047 movies) is read from memory once for its group
maxima and then stays in the core's cache while its candidates are gathered and
sorted, where the numpy select reads the whole block again to gather them
(what that is worth: benchmarks/README.md, "Retrieval").

Imported only by :func:`search.topk.select_topk`, and only when numba is
installed; without it the numpy select runs.
"""

from __future__ import annotations

import numba
import numpy as np


def _compiled(function):
    """``function`` compiled without the GIL, cached on disk where numba finds a
    writable place (beside this file, or the user's cache folder); compiled
    afresh in each process where it finds none, e.g. a read-only install whose
    user has no writable home, instead of failing to import."""
    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(function)


@_compiled
def select_rows(scores, k, n_groups, out_cols, out_vals):  # pragma: no cover - compiled
    """Each row's ``k`` best of ``scores`` (2-D float32) into ``out_cols`` (int64) and
    ``out_vals`` (float32), both ``(rows, k)``, best first.

    ``n_groups`` strided groups per row (column ``j`` in group ``j % n_groups``): the
    k-th largest group maximum bounds the row's k-th best from below, so only the
    groups reaching it are searched. With ``n_groups <= 4 k`` every finite column
    is a candidate. Releases the GIL, so worker threads run it side by side.
    """
    m, n = scores.shape
    slabs = n // n_groups
    group_max = np.empty(n_groups, np.float32)
    largest = np.empty(k, np.float32)  # the k largest group maxima, in descending order
    cand_vals = np.empty(n, np.float32)
    cand_cols = np.empty(n, np.int64)
    for r in range(m):
        row = scores[r]
        bound = -np.inf
        if n_groups > 4 * k:
            group_max[:] = row[:n_groups]
            for s in range(1, slabs):
                slab = row[s * n_groups : (s + 1) * n_groups]
                for g in range(n_groups):  # max() over a slab slice: LLVM vectorises this form
                    group_max[g] = max(group_max[g], slab[g])
            # The k-th largest group maximum, by insertion into a sorted list of k: after
            # the first few groups almost every maximum fails the first comparison, and
            # nothing is allocated (np.partition here copied the maxima for every row).
            largest[:] = -np.inf
            for g in range(n_groups):
                value = group_max[g]
                if value > largest[k - 1]:
                    i = k - 1
                    while i > 0 and largest[i - 1] < value:
                        largest[i] = largest[i - 1]
                        i -= 1
                    largest[i] = value
            bound = largest[k - 1]
        size = 0
        if bound == -np.inf:  # few columns, or too few finite groups: every finite entry
            for j in range(n):
                if row[j] > -np.inf:
                    cand_vals[size], cand_cols[size] = row[j], j
                    size += 1
        else:
            for g in range(n_groups):
                if group_max[g] >= bound:
                    for s in range(slabs):
                        if row[s * n_groups + g] >= bound:
                            cand_vals[size], cand_cols[size] = row[s * n_groups + g], s * n_groups + g
                            size += 1
            for j in range(slabs * n_groups, n):  # the columns after the last whole slab
                if row[j] >= bound:
                    cand_vals[size], cand_cols[size] = row[j], j
                    size += 1
        # By column, then stably by score: ties keep the lower column first.
        by_column = np.argsort(cand_cols[:size])
        vals, cols = cand_vals[:size][by_column], cand_cols[:size][by_column]
        best = np.argsort(-vals, kind="mergesort")
        kept = min(k, size)
        for a in range(kept):
            out_vals[r, a], out_cols[r, a] = vals[best[a]], cols[best[a]]
        for a in range(kept, k):
            out_vals[r, a], out_cols[r, a] = -np.inf, -1
