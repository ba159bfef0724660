"""Checks shared by the bundle reader and the command lines, and how those run a parsed command (standard
library only, so that building a parser stays light)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable


def whole_number_arg(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``low`` to ``high`` (None: unbounded), with a message
    naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value

    return parse


def shorten(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters and '…', so a value quoted in a message stays readable."""
    return text if len(text) <= limit else text[:limit] + "…"


def run_command(args: argparse.Namespace, user_errors: tuple[type[Exception], ...]) -> int:
    """Run ``args.handler(args)``: one of ``user_errors`` prints ``error: ...`` on stderr and returns 2 (no
    traceback); a reader that went away (``... | head``) returns 1 quietly."""
    try:
        return args.handler(args)
    except user_errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # No traceback, and no second error when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
