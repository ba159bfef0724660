"""Checks of numbers shared by the config, the bundle reader and the command lines
(the ``embedder``, ``search`` and ``web`` command lines).

Standard library only, so that building a command line's parser stays light.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable


def finite_number(value: Any) -> bool:
    """Whether ``value`` is an int or float that a float holds finitely (a bool is not
    a number here; nor are NaN, the infinities and ints beyond the float range)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= sys.float_info.max


def whole_number_arg(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ``[low, high]`` (None: unbounded), with
    a message naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value

    return parse
