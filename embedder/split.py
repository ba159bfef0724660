"""The canonical train/test split (docs/design.md, "Data flow"), and the validation carve-out."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from embedder.ratings import DataError

CANONICAL_TEST_SIZE = 0.2
CANONICAL_RANDOM_STATE = 42


def canonical_split(ratings: pd.DataFrame, *, source: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``train_test_split(test_size=0.2, random_state=42)`` over rating rows in file order.

    Every figure this project reports (and the peers in ``benchmarks/``) uses
    exactly this split, so numbers are comparable.

    Args:
        ratings: The canonical ratings frame.
        source: Where the ratings came from (:attr:`RatingsData.source`), named in
            the error.

    Raises:
        DataError: Too few ratings for both parts to hold at least one.
    """
    _check_splittable(len(ratings), CANONICAL_TEST_SIZE, "the train/test split", source)
    train, test = _shuffled_rows(len(ratings), CANONICAL_TEST_SIZE, CANONICAL_RANDOM_STATE)
    return ratings.take(train), ratings.take(test)


def validation_split(
    train: pd.DataFrame, fraction: float, seed: int, *, source: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Carve a validation part out of the TRAINING rows (for early stopping only).

    Raises:
        DataError: Too few training ratings for both parts to hold at least one.
    """
    fit, val = _validation_rows(train, fraction, seed, source)
    return train.take(fit), train.take(val)


def validation_part(train: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """The validation rows of :func:`validation_split`, without copying the rest
    (18M other training rows at ML-25M size)."""
    return train.take(_validation_rows(train, fraction, seed, None)[1])


def _validation_rows(train: pd.DataFrame, fraction: float, seed: int, source: str | None):
    """Positions of the fitted and the validation rows: the rows ``train_test_split`` picks."""
    _check_splittable(len(train), fraction, "the validation split of the training ratings", source)
    return _shuffled_rows(len(train), fraction, seed)


def _shuffled_rows(rows: int, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row positions exactly as ``train_test_split(test_size=..., random_state=seed)``
    draws them: its ``ShuffleSplit`` takes one ``RandomState(seed).permutation``, test
    rows first. Done here because importing scikit-learn costs more than the split
    itself; ``tests/embedder/test_data.py`` checks both splits against it."""
    n_train, n_test = _parts(rows, test_size)
    permutation = np.random.RandomState(seed).permutation(rows)
    return permutation[n_test : n_test + n_train], permutation[:n_test]


def _check_splittable(rows: int, test_size: float, what: str, source: str | None) -> None:
    """Say in our words what sklearn would say in its own: a part would be empty."""
    if min(_parts(rows, test_size)) >= 1:
        return
    needed = next((n for n in range(rows + 1, 10_000) if min(_parts(n, test_size)) >= 1), None)
    at_least = f"; it needs at least {needed}" if needed else ""
    where = f"{source}: " if source else ""
    raise DataError(
        f"{where}{rows} rating(s) are too few for {what} ({test_size:g} held out): "
        f"a part would be empty{at_least}"
    )


def _parts(rows: int, test_size: float) -> tuple[int, int]:
    """(train, test) sizes as train_test_split computes them for a float ``test_size``."""
    held_out = math.ceil(test_size * rows)
    return math.floor((1.0 - test_size) * rows), held_out
