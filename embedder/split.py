"""The canonical train/test split of DESIGN.md, and the validation carve-out."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

CANONICAL_TEST_SIZE = 0.2
CANONICAL_RANDOM_STATE = 42


def canonical_split(ratings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``train_test_split(test_size=0.2, random_state=42)`` over rating rows in file order.

    Every figure this project reports (and the peers in ``benchmarks/``) uses
    exactly this split, so numbers are comparable.
    """
    train, test = train_test_split(
        ratings, test_size=CANONICAL_TEST_SIZE, random_state=CANONICAL_RANDOM_STATE
    )
    return train, test


def validation_split(train: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Carve a validation part out of the TRAINING rows (for early stopping only)."""
    fit, val = train_test_split(train, test_size=fraction, random_state=seed)
    return fit, val
