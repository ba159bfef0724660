"""Vocabulary: original MovieLens ids <-> contiguous row indexes."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd


class UnknownIdError(KeyError):
    """An id that the vocabulary does not hold; the message names it."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0]) if self.args else ""


class Vocabulary:
    """Maps original ids (int64) to rows ``0..n-1``, in the order of ``ids`` as given (so a vocabulary rebuilt
    from a bundle's ``*_ids.npy`` maps exactly as the one used in training), and back through ``ids``."""

    def __init__(self, ids: np.ndarray, kind: str = "id"):
        self.ids, self.kind = np.asarray(ids, dtype=np.int64), kind
        if not (index := pd.Index(self.ids)).is_unique:
            raise ValueError(f"{kind} ids are not unique")
        self._index = index

    @classmethod
    def from_values(cls, values: np.ndarray, kind: str = "id") -> Vocabulary:
        """A vocabulary of the distinct values, in ascending id order."""
        return cls(np.unique(np.asarray(values, dtype=np.int64)), kind)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, raw_id: object) -> bool:
        try:
            return int(raw_id) in self._index  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return False

    def number(self, raw_id: int) -> int:
        """The row of one id; :class:`UnknownIdError` when the vocabulary lacks it."""
        return int(self.numbers(np.array([raw_id]))[0])

    def numbers(self, raw_ids: np.ndarray, missing: Literal["error", "negative"] = "error") -> np.ndarray:
        """Rows of many ids (any shape); unknown ids raise :class:`UnknownIdError`, or map to -1."""
        raw_ids = np.asarray(raw_ids, dtype=np.int64)
        rows = self._index.get_indexer(raw_ids.ravel()).reshape(raw_ids.shape).astype(np.int64, copy=False)
        if missing == "error" and (rows < 0).any():
            raise UnknownIdError(f"unknown {self.kind} {int(raw_ids[rows < 0].flat[0])}")
        return rows
