"""Checks of caller-supplied counts at the public boundary, with messages that name the argument (booleans
are not numbers here, although Python counts them as ints)."""

from __future__ import annotations

import numpy as np


def is_whole(value: object) -> bool:
    """Whether ``value`` is a Python or numpy integer (not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_count(value: object, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int; a ValueError naming ``name`` unless a whole number from ``low`` to ``high``."""
    if not is_whole(value) or value < low or (high is not None and value > high):
        allowed = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a whole number {allowed}, got {value!r}")
    return int(value)
