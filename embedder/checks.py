"""Checks shared by the config, the bundle reader, the web's request models and
the command lines (``embedder``, ``search`` and ``web``), and how those command
lines run a parsed command.

Standard library only, so that building a command line's parser stays light.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any


def finite_number(value: Any) -> bool:
    """Whether ``value`` is an int or float that a float holds finitely (a bool is not
    a number here; nor are NaN, the infinities and ints beyond the float range)."""
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= sys.float_info.max
    )


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


def error_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the path a message names: ``ratings[0].movie_id``,
    ``[0].size``; empty for the whole value."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def shorten(text: str, limit: int = 40, mark: str = "…") -> str:
    """``text`` cut to ``limit`` characters and ``mark`` when longer: a value quoted in a
    message stays readable however long the bad input was."""
    return text if len(text) <= limit else text[:limit] + mark


def run_command(args: argparse.Namespace, user_errors: tuple[type[Exception], ...]) -> int:
    """Run a parsed command line's ``args.handler(args)`` and return its exit status.

    One of ``user_errors`` (a bad file, id or value) prints ``error: ...`` on
    stderr and returns 2, without a traceback; a reader that went away
    (``... | head``) returns 1 quietly.
    """
    try:
        return args.handler(args)
    except user_errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # No traceback, and no second error when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
