"""Every user's top-K for batch jobs (``python -m search recommend-all``): one parquet file, streamed.

One row per (user, rank): ``user_id`` int64, ``rank`` int16 (1 = best), ``movie_id`` int64, ``score``
float32 (the raw predicted rating), ``relevance`` float32 (NaN without a relevance model), seen movies
excluded. Memory stays at one block's scores whatever the number of users. ``--shard I/N`` writes the I-th
of N contiguous user shards, so N jobs write N files that together hold every user once. The file is
written under a hidden name and renamed into place when complete: a reader never sees half a file.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedder.publish import leftover_path

SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("rank", pa.int16()),
        ("movie_id", pa.int64()),
        ("score", pa.float32()),
        ("relevance", pa.float32()),
    ]
)
MAX_K = 2**15 - 1
"""``rank`` is int16."""


@dataclass(frozen=True)
class Shard:
    """The ``index``-th (0-based) of ``count`` contiguous shards of the users."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` with 1 ≤ I ≤ N, as the command line takes it."""
        parts = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not parts or not 1 <= int(parts[1]) <= int(parts[2]):
            raise ValueError(f"expected I/N with 1 <= I <= N, such as 1/4, got {text!r}")
        return cls(int(parts[1]) - 1, int(parts[2]))

    def rows(self, n_users: int) -> slice:
        """This shard's users as a slice of the bundle's rows."""
        return slice(self.index * n_users // self.count, (self.index + 1) * n_users // self.count)


class Written(NamedTuple):
    """What :func:`write_recommendations` wrote."""

    path: Path
    users: int
    rows: int
    seconds: float


def write_recommendations(
    rec,
    out: str | os.PathLike,
    k: int = 10,
    min_ratings: int = 0,
    shard: Shard = Shard(),
    batch_size: int = 4096,
    progress: bool = False,
    workers: int = 1,
    order: str = "relevance",
) -> Written:
    """Write the top-``k`` of every user of ``shard`` to the parquet file ``out``, from ``rec``, a
    :class:`search.Recommender` (:meth:`~search.Recommender.recommend_all`); ``progress`` lines on stderr."""
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be from 1 to {MAX_K}, got {k}")
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"{out}: is a folder; give the parquet file to write")
    if not out.parent.is_dir():
        raise ValueError(f"{out.parent}: no such folder")
    rows = shard.rows(len(rec.user_ids))
    n_users = rows.stop - rows.start
    started = time.perf_counter()
    staged = leftover_path(out)
    written = done = 0
    try:
        with pq.ParquetWriter(staged, SCHEMA) as writer:
            blocks = rec.recommend_all(
                k=k, batch_size=batch_size, min_ratings=min_ratings, rows=rows, workers=workers, order=order
            )
            for users, ids, scores, relevance in blocks:
                keep = ids >= 0  # padding of a user with fewer candidates than k
                ranks = np.broadcast_to(np.arange(1, ids.shape[1] + 1, dtype=np.int16), ids.shape)
                columns = [np.broadcast_to(users[:, None], ids.shape), ranks, ids, scores, relevance]
                writer.write_table(pa.table([c[keep] for c in columns], schema=SCHEMA))
                written += int(keep.sum())
                done += len(users)
                if progress and done * 10 // n_users > (done - len(users)) * 10 // n_users:  # every tenth
                    print(f"recommend-all: {done:,}/{n_users:,} users", file=sys.stderr, flush=True)
        os.replace(staged, out)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return Written(out, n_users, written, time.perf_counter() - started)
