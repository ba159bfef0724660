"""Vocabulary: original MovieLens ids <-> contiguous row indexes."""

from __future__ import annotations

from typing import Literal

import numpy as np

TABLE_SPREAD = 8
"""Ids are looked up in a table indexed by id (one gather instead of a binary
search per id) when they are non-negative and the largest is at most this many
times their count (plus 1024); MovieLens ids are."""


class UnknownIdError(KeyError):
    """An id that the vocabulary does not hold; the message names it."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0]) if self.args else ""


class Vocabulary:
    """Maps original ids (int64) to rows ``0..n-1`` and back.

    Rows follow the order of ``ids`` as given, so a vocabulary rebuilt from a
    bundle's ``*_ids.npy`` maps exactly as the one used in training.
    """

    def __init__(self, ids: np.ndarray, kind: str = "id"):
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1:
            raise ValueError(f"{kind} ids must be one-dimensional, got shape {ids.shape}")
        self.ids = ids
        self.kind = kind
        order = np.argsort(ids, kind="stable")
        self._sorted_ids = ids[order]
        self._sorted_rows = order
        if len(ids) and (np.diff(self._sorted_ids) == 0).any():
            raise ValueError(f"{kind} ids are not unique")
        self._table: np.ndarray | None = None
        if len(ids) and 0 <= self._sorted_ids[0] and self._sorted_ids[-1] <= TABLE_SPREAD * len(ids) + 1024:
            self._table = np.full(int(self._sorted_ids[-1]) + 1, -1, dtype=np.int64)
            self._table[ids] = np.arange(len(ids))

    @classmethod
    def from_values(cls, values: np.ndarray, kind: str = "id") -> "Vocabulary":
        """A vocabulary of the distinct values, in ascending id order."""
        return cls(np.unique(np.asarray(values, dtype=np.int64)), kind)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, raw_id: object) -> bool:
        try:
            return self.number(int(raw_id), missing="none") is not None  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def number(self, raw_id: int, missing: Literal["error", "none"] = "error") -> int | None:
        """The row of one id; ``missing="none"`` returns None for an unknown id."""
        rows = self.numbers(np.array([raw_id]), missing="negative")
        if rows[0] < 0:
            if missing == "none":
                return None
            raise UnknownIdError(f"unknown {self.kind} {raw_id}")
        return int(rows[0])

    def numbers(
        self, raw_ids: np.ndarray, missing: Literal["error", "negative"] = "error"
    ) -> np.ndarray:
        """Rows of many ids (vectorised); unknown ids raise, or map to -1."""
        raw_ids = np.asarray(raw_ids, dtype=np.int64)
        if len(self.ids) == 0:
            rows = np.full(raw_ids.shape, -1, dtype=np.int64)
        elif self._table is not None:
            top = len(self._table) - 1
            rows = self._table[np.clip(raw_ids, 0, top)]
            rows[(raw_ids < 0) | (raw_ids > top)] = -1
        else:
            pos = np.minimum(np.searchsorted(self._sorted_ids, raw_ids), len(self.ids) - 1)
            rows = np.where(self._sorted_ids[pos] == raw_ids, self._sorted_rows[pos], -1)
        if missing == "error" and (rows < 0).any():
            raise UnknownIdError(f"unknown {self.kind} {int(raw_ids[rows < 0].flat[0])}")
        return rows.astype(np.int64, copy=False)
