"""List and prune the bundles ``train`` publishes in ``artifacts/bundles/``, or the versions of a bundle
(``python -m embedder bundles [--bundle DIR] [--keep N]``), and the leftovers of interrupted writers
(:mod:`embedder.publish`). A bundle that a link there points to is never removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from embedder.bundle import MANIFEST, BundleError
from embedder.publish import LEFTOVER_MIN_AGE_S, leftover_owner, leftover_path, leftover_time, version_base

BUNDLE, NOT_A_BUNDLE, LINK, LEFTOVER = "bundle", "not a bundle", "link", "staging leftover"


@dataclass(frozen=True)
class BundleRow:
    """One entry listed: its ``kind``; ``created`` (manifest ``updated`` or ``created``, else mtime);
    ``bytes`` of its files and ``own_bytes`` of those no other version shares; ``current``: the one served."""

    name: str
    path: Path
    kind: str
    created: datetime
    bytes: int | None
    own_bytes: int | None
    test_rmse: float | None = None
    current: bool = False

    def to_json(self) -> dict:
        """The row as JSON-ready values."""
        return asdict(self) | {"path": str(self.path), "created": self.created.isoformat(timespec="seconds")}


class PruneResult(NamedTuple):
    """What :func:`prune_bundles` or :func:`prune_versions` removed, and every row it left."""

    removed: list[BundleRow]
    kept: list[BundleRow]


def list_bundles(artifacts: str | os.PathLike) -> list[BundleRow]:
    """The entries of ``artifacts/bundles/`` (bundles newest first, then the others), then the leftovers there
    and in ``artifacts`` (oldest first); ``current`` marks the one ``artifacts/current`` leads to."""
    artifacts = Path(artifacts)
    if not artifacts.is_dir():
        raise BundleError(f"{artifacts}: no artifacts folder there (make one: python -m embedder train)")
    folder = artifacts / "bundles"
    visible = [entry for entry in _entries(folder) if not entry.name.startswith(".")]
    hidden = [entry for entry in _entries(folder) + _entries(artifacts) if leftover_owner(entry.name)]
    return _rows(visible, hidden, artifacts / "current")


def versions_folder(bundle: str | os.PathLike) -> tuple[Path, str]:
    """The folder holding the versions of the bundle at ``bundle`` and their common name."""
    path = Path(os.path.abspath(bundle))
    if not os.path.lexists(path):
        raise BundleError(f"{path}: no bundle there")
    home = path.resolve() if path.is_symlink() else path
    return home.parent, version_base(home.name)


def list_versions(bundle: str | os.PathLike) -> list[BundleRow]:
    """The versions of the bundle at ``bundle`` and the link naming them, as :func:`list_bundles` lists."""
    folder, name = versions_folder(bundle)
    ours = lambda entry: entry is not None and version_base(entry) == name  # name or <name>+<UTC stamp>
    entries = _entries(folder)
    hidden = [entry for entry in entries if ours(leftover_owner(entry.name))]
    return _rows([entry for entry in entries if ours(entry.name)], hidden, Path(bundle))


def earlier_versions_note(bundle: str | os.PathLike) -> str | None:
    """How many earlier versions of the bundle just published at ``bundle`` are kept, how to remove them."""
    older = sum(row.kind == BUNDLE and not row.current for row in list_versions(bundle))
    command = f"python -m embedder bundles --bundle {bundle} --keep 1"
    return f"{older} earlier version(s) kept beside it: `{command}` removes them" if older else None


def prune_bundles(artifacts: str | os.PathLike, keep: int) -> PruneResult:
    """Delete all but the ``keep`` newest bundles of ``artifacts/bundles/`` and old leftovers; never what a
    link in ``artifacts/`` or ``artifacts/bundles/`` points to, links, nor entries that are not bundles."""
    artifacts = Path(artifacts)
    return _prune(list_bundles(artifacts), keep, artifacts, artifacts / "bundles")


def prune_versions(bundle: str | os.PathLike, keep: int) -> PruneResult:
    """Delete all but the ``keep`` newest versions of the bundle at ``bundle`` and its old leftovers; never
    the version ``bundle`` leads to nor one another link beside them points to."""
    return _prune(list_versions(bundle), keep, versions_folder(bundle)[0])


def _prune(rows: list[BundleRow], keep: int, *link_folders: Path) -> PruneResult:
    """Remove bundles after the ``keep`` newest but those linked from ``link_folders``, and old leftovers."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    linked = {entry.resolve() for place in link_folders for entry in _entries(place) if entry.is_symlink()}
    bundles = [row for row in rows if row.kind == BUNDLE]
    doomed = [row for row in bundles[keep:] if not row.current and row.path.resolve() not in linked]
    cutoff = time.time() - LEFTOVER_MIN_AGE_S
    doomed += [row for row in rows if row.kind == LEFTOVER and row.created.timestamp() < cutoff]
    removed = [row for row in doomed if _remove(row)]
    return PruneResult(removed, [row for row in rows if row not in removed])


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _rows(visible: list[Path], leftovers: list[Path], served: Path) -> list[BundleRow]:
    """``visible`` described, bundles newest first, then ``leftovers``, oldest first; vanished skipped."""
    current = served.resolve() if served.exists() else None
    rows, hidden = [], []
    for entries, found in ((visible, rows), (leftovers, hidden)):
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                found.append(_describe(entry, current, entries is leftovers))
    rows.sort(key=lambda row: (row.kind == BUNDLE, row.created, row.name), reverse=True)
    return rows + sorted(hidden, key=lambda row: row.created)


def _describe(entry: Path, current: Path | None, leftover: bool) -> BundleRow:
    mtime = datetime.fromtimestamp(leftover_time(entry) if leftover else entry.lstat().st_mtime, timezone.utc)
    if leftover or entry.is_symlink():
        sizes = _sizes(entry) if leftover else (None, None)
        return BundleRow(entry.name, entry, LEFTOVER if leftover else LINK, mtime, *sizes)
    manifest = None
    with contextlib.suppress(OSError, ValueError):  # missing, unreadable or not JSON: not a bundle
        manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
    kind = BUNDLE if isinstance(manifest, dict) else NOT_A_BUNDLE
    manifest = manifest if kind == BUNDLE else {}
    created = _time(manifest.get("updated")) or _time(manifest.get("created")) or mtime
    rmse = None
    with contextlib.suppress(KeyError, TypeError, ValueError):
        rmse = float(manifest["metrics"]["test"]["rmse"])
    return BundleRow(entry.name, entry, kind, created, *_sizes(entry), rmse, entry.resolve() == current)


def _time(value: object) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _sizes(entry: Path) -> tuple[int, int]:
    """Bytes of the files under ``entry`` (links not followed): all, and those with no other hard link."""
    stats = [entry.lstat()] if entry.is_symlink() or not entry.is_dir() else []
    for root, _dirs, names in os.walk(entry):
        for name in names:
            with contextlib.suppress(OSError):  # removed meanwhile by the writer that owns it
                stats.append((Path(root) / name).lstat())
    return sum(s.st_size for s in stats), sum(s.st_size for s in stats if s.st_nlink == 1)


def _remove(row: BundleRow) -> bool:
    """Delete one bundle or leftover; False when it changed or vanished since it was listed."""
    path = row.path
    try:
        if path.is_symlink() or not path.is_dir():
            if row.kind != LEFTOVER:
                return False
            path.unlink()  # a leftover link: never its target
            return True
        if row.kind == BUNDLE:  # hidden first: a crash mid-delete leaves a leftover, never half a bundle
            path = path.rename(leftover_path(path))
        shutil.rmtree(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise BundleError(f"{row.path}: could not be removed ({err.strerror})") from err
    return True
