"""Versions and links: how a new bundle takes the place of the old one (docs/design.md, "The bundle").

A version (``<name>+<UTC stamp>``, or ``<data>-<stamp>`` from ``train``) is written once, never changed; other
bundle paths are links to one. A writer fills a hidden staging folder (``.<name>.tmp-<8 characters>``),
renames it to a new version and moves the link with one ``os.replace``: a crash leaves either version linked.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

STAMP = r"\d{8}T\d{12}Z"
LEFTOVER_MIN_AGE_S = 3600.0
"""Staging leftovers younger than this are never removed: a writer may be filling them now."""
_LEFTOVER = re.compile(r"\.(.+)\.tmp-[a-z0-9_]{8}")


def utc_stamp() -> str:
    """A UTC time stamp for version names, to the microsecond."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def version_base(name: str) -> str:
    """The name every version of ``name`` shares: ``name`` without a ``+<UTC stamp>`` at its end."""
    return re.sub(rf"\+{STAMP}$", "", name)


def is_version(name: str) -> bool:
    """Whether ``name`` is a version's: a UTC stamp at its end (``<name>+<stamp>``, ``<data>-<stamp>``)."""
    return re.search(rf"[-+]{STAMP}$", name) is not None


def leftover_prefix(name: str) -> str:
    """How the temporary entries of a writer of ``name`` begin: ``.<name>.tmp-``."""
    return f".{name}.tmp-"


def leftover_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``: ``.<name>.tmp-<8 hex digits>``."""
    return path.with_name(f"{leftover_prefix(path.name)}{uuid.uuid4().hex[:8]}")


def leftover_owner(name: str) -> str | None:
    """The entry whose writer left the leftover ``name``; None if ``name`` is no leftover."""
    return match.group(1) if (match := _LEFTOVER.fullmatch(name)) else None


def leftover_time(entry: Path) -> float:
    """The newest modification time in a leftover, links not followed: its writer's last sign of life."""
    times = [entry.lstat().st_mtime]
    if entry.is_dir() and not entry.is_symlink():
        for child in entry.iterdir():
            with contextlib.suppress(OSError):  # removed meanwhile by the writer that owns it
                times.append(child.lstat().st_mtime)
    return max(times)


def remove_old_leftovers(folder: Path, prefix: str = ".") -> None:
    """Remove old leftovers ``prefix...`` in ``folder``: links, and staging folders of plain files only."""
    cutoff = time.time() - LEFTOVER_MIN_AGE_S
    for entry in folder.iterdir():
        if not entry.name.startswith(prefix) or not leftover_owner(entry.name):
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            if leftover_time(entry) >= cutoff:
                continue
            if entry.is_symlink():
                entry.unlink()
            elif all(child.is_file() and not child.is_symlink() for child in entry.iterdir()):
                shutil.rmtree(entry)


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def staging_folder(dest: Path) -> Path:
    """A hidden folder beside the versions of ``dest`` (one file system: the publishing rename is atomic)."""
    home = dest.resolve() if dest.is_symlink() else dest  # a link: beside the version it points to
    remove_old_leftovers(home.parent)
    staged = Path(tempfile.mkdtemp(prefix=leftover_prefix(version_base(home.name)), dir=home.parent))
    staged.chmod(0o755)  # mkdtemp makes it private; what is published is meant to be shared
    return staged


def publish(staged: Path, dest: Path) -> Path:
    """Make the complete folder ``staged`` a new version and ``dest`` lead to it; returns the version. A link
    moves to a new version beside its old one; a bundle folder that is no version is first kept as one."""
    if not dest.is_symlink() and is_version(dest.name):
        version = dest
    else:
        home = dest.resolve() if dest.is_symlink() else dest
        version = home.with_name(f"{version_base(home.name)}+{utc_stamp()}")
    os.rename(staged, version)  # over an empty folder too
    fsync_dir(version.parent)
    if version != dest:
        if dest.is_dir() and not dest.is_symlink():
            if any(dest.iterdir()):
                os.rename(dest, dest.with_name(f"{dest.name}+{utc_stamp()}"))
            else:
                dest.rmdir()  # empty: nobody loaded a bundle from it
        point_current(dest, version)
    return version


def point_current(link: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Atomically make the symlink ``link`` point at ``target`` (a relative link), by one ``os.replace``."""
    link, target = Path(link), Path(target)
    link.parent.mkdir(parents=True, exist_ok=True)
    remove_old_leftovers(link.parent, prefix=leftover_prefix(link.name))
    temp = leftover_path(link)
    os.symlink(os.path.relpath(target.resolve(), link.parent.resolve()), temp)
    os.replace(temp, link)
    fsync_dir(link.parent)
    return link
