"""The bundles ``train`` publishes in ``artifacts/bundles/``, and the versions of a
bundle the user named: list them, prune old ones.

``python -m embedder bundles [--keep N]``, and ``bundles --bundle DIR [--keep N]``
for the versions that replacing ``DIR`` (``train --out DIR``, ``search build
--bundle DIR``) left beside it as ``<DIR>+<UTC stamp>``. Writers stage into hidden ``.*.tmp-*``
entries and rename them into place (:mod:`embedder.publish`), so an interrupted
writer can leave such leftovers behind; they are listed, and removed once they are
old enough that no writer can still be filling them (the next publish into the
same folder removes them too). A bundle that a link here points to (``current``,
or a folder that a replacement turned into a link to its new version) is never
removed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from embedder.bundle import MANIFEST, BundleError
from embedder.checks import finite_number
from embedder.publish import LEFTOVER_MIN_AGE_S, is_leftover, is_version_of, leftover_owner, leftover_path, leftover_time, version_base, version_home

BUNDLES_FOLDER = "bundles"
CURRENT_LINK = "current"

BUNDLE, NOT_A_BUNDLE, LINK, LEFTOVER = "bundle", "not a bundle", "link", "staging leftover"


@dataclass(frozen=True)
class BundleRow:
    """One entry found by :func:`list_bundles` or :func:`list_versions`.

    ``kind`` is ``"bundle"`` (a folder with a readable ``manifest.json``), ``"not a
    bundle"``, ``"link"`` (never followed) or ``"staging leftover"`` (a hidden
    ``.*.tmp-*`` entry an interrupted writer left). ``created`` is the manifest's
    ``created`` time, else the entry's modification time; for a leftover, the newest
    modification time of anything in it (its last sign of a writer). ``current``:
    the folder served (that ``current`` or the named bundle leads to), never a link.
    ``bytes`` counts every file; ``own_bytes`` only those no other name links to (the
    files a version shares with the versions made from it are hard links), which is
    what removing it frees.
    """

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


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune_bundles` deleted, and every row it left in place."""

    removed: list[BundleRow]
    kept: list[BundleRow]


def list_bundles(artifacts: str | os.PathLike) -> list[BundleRow]:
    """The entries of ``artifacts/bundles/``: bundles newest first, then links and
    other entries, then the staging leftovers found there and in ``artifacts``
    itself (oldest first). Hidden entries that are not leftovers are left out.

    Raises
    ------
    BundleError
        If ``artifacts`` is not a folder.
    """
    artifacts = Path(artifacts)
    if not artifacts.is_dir():
        raise BundleError(f"{artifacts}: no artifacts folder there (train one with `python -m embedder train`)")
    folder = artifacts / BUNDLES_FOLDER
    visible = [entry for entry in _entries(folder) if not entry.name.startswith(".")]
    hidden = [entry for parent in (folder, artifacts) for entry in _entries(parent) if is_leftover(entry.name)]
    return _rows(visible, hidden, _current_target(artifacts))


def versions_folder(bundle: str | os.PathLike) -> tuple[Path, str]:
    """The folder holding the versions of the bundle at ``bundle``, and their common
    name: ``<name>`` (a folder never replaced, or the link a replacement made of it)
    and ``<name>+<UTC stamp>`` beside the folder ``bundle`` points to; a folder the
    user named ``<name>+something`` is not one of them.

    Raises
    ------
    BundleError
        If nothing is at ``bundle``.
    """
    home = _version_home(bundle)
    return home.parent, version_base(home.name)


def _version_home(bundle: str | os.PathLike) -> Path:
    """The folder ``bundle`` leads to, where its versions sit (:func:`embedder.publish.version_home`)."""
    path = Path(os.path.abspath(bundle))
    if not os.path.lexists(path):
        raise BundleError(f"{path}: no bundle there")
    return version_home(path)


def list_versions(bundle: str | os.PathLike) -> list[BundleRow]:
    """The versions of the bundle at ``bundle`` (see :func:`versions_folder`), as
    :func:`list_bundles` lists a folder: newest first, the one ``bundle`` points to
    marked current, then the staging leftovers of its writers.

    Raises
    ------
    BundleError
        If nothing is at ``bundle``.
    """
    home = _version_home(bundle)
    folder, name = home.parent, version_base(home.name)

    def ours(entry_name: str) -> bool:
        return entry_name in (name, home.name) or is_version_of(entry_name, name)

    entries = _entries(folder)
    versions = [entry for entry in entries if ours(entry.name)]
    hidden = [entry for entry in entries if (owner := leftover_owner(entry.name)) is not None and ours(owner)]
    path = Path(bundle)
    return _rows(versions, hidden, path.resolve() if path.exists() else None)


def earlier_versions_note(bundle: str | os.PathLike) -> str | None:
    """For a command that just published ``bundle``: how many earlier versions of it
    are kept beside it and the command that removes them; None when there are none."""
    older = sum(row.kind == BUNDLE and not row.current for row in list_versions(bundle))
    if not older:
        return None
    return f"{older} earlier version(s) kept beside it: `python -m embedder bundles --bundle {bundle} --keep 1` removes them"


def _rows(visible: list[Path], leftovers: list[Path], current: Path | None) -> list[BundleRow]:
    """``visible`` described, bundles newest first, then the ``leftovers``, oldest first."""
    rows = _still_there(lambda entry: _describe(entry, current), visible)
    rows.sort(key=lambda row: (row.kind == BUNDLE, row.created, row.name), reverse=True)  # bundles first
    return rows + sorted(_still_there(_describe_leftover, leftovers), key=lambda row: row.created)


def prune_bundles(artifacts: str | os.PathLike, keep: int) -> PruneResult:
    """Delete all but the ``keep`` newest bundles, and staging leftovers older than
    :data:`LEFTOVER_MIN_AGE_S`.

    Never deleted: the bundle ``artifacts/current`` points at and any bundle another
    link in ``artifacts/`` or ``artifacts/bundles/`` points at (kept in addition
    when not among the newest), links (never followed), entries that are not
    bundles, younger leftovers, and anything outside ``artifacts/bundles/`` except
    the artifacts folder's own leftovers (``.current.tmp-*``).
    """
    artifacts = Path(artifacts)
    return _prune(list_bundles(artifacts), keep, _link_targets(artifacts, artifacts / BUNDLES_FOLDER))


def prune_versions(bundle: str | os.PathLike, keep: int) -> PruneResult:
    """Delete all but the ``keep`` newest versions of the bundle at ``bundle`` (see
    :func:`list_versions`), and its writers' staging leftovers older than
    :data:`LEFTOVER_MIN_AGE_S`. Never deleted: the version ``bundle`` points to,
    any version another link in the versions' folder points to, links, and
    entries that are not bundles."""
    return _prune(list_versions(bundle), keep, _link_targets(versions_folder(bundle)[0]))


def _prune(rows: list[BundleRow], keep: int, linked: set[Path]) -> PruneResult:
    """Remove the bundles of ``rows`` after the ``keep`` newest, except the current one and
    those in ``linked``, and the leftovers old enough."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    bundles = [row for row in rows if row.kind == BUNDLE]  # newest first
    cutoff = time.time() - LEFTOVER_MIN_AGE_S
    doomed = [row for row in bundles[keep:] if not row.current and row.path.resolve() not in linked]
    doomed += [row for row in rows if row.kind == LEFTOVER and row.created.timestamp() < cutoff]
    removed = [row for row in doomed if _remove(row)]
    return PruneResult(removed=removed, kept=[row for row in rows if row not in removed])


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _still_there(describe: Callable[[Path], BundleRow], entries: list[Path]) -> list[BundleRow]:
    rows = []
    for entry in entries:
        try:
            rows.append(describe(entry))
        except FileNotFoundError:  # a writer renamed its staging folder into place meanwhile
            continue
    return rows


def _link_targets(*folders: Path) -> set[Path]:
    """The folders that the links in ``folders`` (hidden ones too: a link about to become
    ``current``) point to, through any chain of links."""
    links = [entry for parent in folders for entry in _entries(parent) if entry.is_symlink()]
    return {link.resolve() for link in links}


def _current_target(artifacts: Path) -> Path | None:
    link = artifacts / CURRENT_LINK
    return link.resolve() if link.exists() else None


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.lstat().st_mtime, timezone.utc)


def _describe(entry: Path, current: Path | None) -> BundleRow:
    if entry.is_symlink():  # never current: that is the bundle it leads to
        return BundleRow(entry.name, entry, LINK, _mtime(entry), None, None)
    is_current = current is not None and entry.resolve() == current
    manifest = _manifest_or_none(entry)
    if manifest is None:
        return BundleRow(entry.name, entry, NOT_A_BUNDLE, _mtime(entry), *_sizes(entry), current=is_current)
    # A version made by update_bundle (e.g. search build) is as new as its update.
    created = _parse_time(manifest.get("updated")) or _parse_time(manifest.get("created")) or _mtime(entry)
    return BundleRow(entry.name, entry, BUNDLE, created, *_sizes(entry), _test_rmse(manifest), is_current)


def _describe_leftover(entry: Path) -> BundleRow:
    newest = datetime.fromtimestamp(leftover_time(entry), timezone.utc)
    return BundleRow(entry.name, entry, LEFTOVER, newest, *_sizes(entry))


def _sizes(entry: Path) -> tuple[int, int]:
    """Bytes of the files under ``entry`` (links not followed): all of them, and those
    with no other hard link."""
    if entry.is_symlink() or not entry.is_dir():
        found = [entry.lstat()]
    else:
        found = [stat for root, _dirs, names in os.walk(entry) for name in names if (stat := _lstat_or_none(Path(root) / name))]
    return sum(stat.st_size for stat in found), sum(stat.st_size for stat in found if stat.st_nlink == 1)


def _lstat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except OSError:  # removed meanwhile, e.g. by the writer that owns it
        return None


def _manifest_or_none(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable or not JSON: not a bundle
        return None
    return manifest if isinstance(manifest, dict) else None


def _parse_time(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _test_rmse(manifest: dict) -> float | None:
    try:
        value = manifest["metrics"]["test"]["rmse"]
    except (KeyError, TypeError):
        return None
    return float(value) if finite_number(value) else None


def _remove(row: BundleRow) -> bool:
    """Delete one bundle or leftover; False when it changed or vanished since it was listed."""
    path = row.path
    try:
        if row.kind == LEFTOVER and (path.is_symlink() or not path.is_dir()):
            path.unlink()  # e.g. .current.tmp-*: removes the link, never its target
            return True
        if path.is_symlink() or not path.is_dir():
            return False
        hidden = path
        if row.kind == BUNDLE:
            # Hide it first: a crash mid-delete then leaves a staging leftover for the
            # next prune, never a half-deleted bundle under a name readers look for.
            hidden = leftover_path(path)
            os.rename(path, hidden)
        shutil.rmtree(hidden)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise BundleError(f"{path}: could not be removed ({err.strerror})") from err
    return True
