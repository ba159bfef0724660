"""Atomic publication of a folder: how a new bundle takes the place of the old one.

A writer fills a hidden staging folder made beside the destination
(:func:`staging_folder`, on the same file system), then :func:`publish` puts
it in place in one step (a rename, a link moved, or a folder exchanged with a
link), so a reader never sees a half-written folder, or none; published
versions are never changed again (docs/design.md, "The bundle"). What
interrupted writers leave behind is recognised by name and removed once old
enough. :mod:`embedder.bundle` writes bundles with these; this module knows
nothing of their content.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


LEFTOVER_MIN_AGE_S = 3600.0
"""Staging leftovers younger than this are never removed: a writer may be filling them now."""
_LEFTOVER_NAME = re.compile(r"\.(.+)\.tmp-[a-z0-9_]{8}")


def leftover_prefix(name: str) -> str:
    """How the temporary entries of a writer of ``name`` begin: ``.<name>.tmp-``
    (followed by 8 characters, as :func:`tempfile.mkdtemp` and :func:`leftover_path` add)."""
    return f".{name}.tmp-"


def leftover_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``: ``.<name>.tmp-<8 hex digits>``."""
    return path.with_name(f"{leftover_prefix(path.name)}{uuid.uuid4().hex[:8]}")


def is_leftover(name: str) -> bool:
    """Whether ``name`` is one the writers here give their temporary entries
    (``.<name>.tmp-<8 characters>``), which an interrupted writer leaves behind."""
    return _LEFTOVER_NAME.fullmatch(name) is not None


def leftover_owner(name: str) -> str | None:
    """The entry whose writer left the leftover ``name`` (``<owner>`` in
    ``.<owner>.tmp-<8 characters>``); None if ``name`` is not a leftover."""
    match = _LEFTOVER_NAME.fullmatch(name)
    return match and match.group(1)


def leftover_time(entry: Path) -> float:
    """The newest modification time in a leftover, links not followed: its writer's
    last sign of life (a writer touches the files it writes, not their folder)."""
    times = [entry.lstat().st_mtime]
    if entry.is_dir() and not entry.is_symlink():
        for root, dirs, names in os.walk(entry):
            for name in dirs + names:
                try:
                    times.append((Path(root) / name).lstat().st_mtime)
                except OSError:  # removed meanwhile, e.g. by the writer that owns it
                    pass
    return max(times)


def remove_old_leftovers(folder: Path, prefix: str = ".") -> list[Path]:
    """Remove what interrupted writers left in ``folder`` (entries named ``prefix...``
    that :func:`is_leftover`): temporary links, and staging folders holding only
    files, older than :data:`LEFTOVER_MIN_AGE_S`; a younger one may belong to a writer at
    work. Best effort: what cannot be removed stays for ``bundles --keep``."""
    cutoff = time.time() - LEFTOVER_MIN_AGE_S
    removed = []
    try:
        entries = [entry for entry in folder.iterdir() if entry.name.startswith(prefix) and is_leftover(entry.name)]
    except OSError:
        return removed
    for entry in entries:
        try:
            if leftover_time(entry) >= cutoff:
                continue
            if entry.is_symlink():
                entry.unlink()
            elif entry.is_dir() and all(child.is_file() and not child.is_symlink() for child in entry.iterdir()):
                shutil.rmtree(entry)
            else:
                continue  # not one of ours: a staging folder holds plain files only
        except OSError:  # gone meanwhile (another writer cleaning up), or not ours to remove
            continue
        removed.append(entry)
    return removed


def staging_folder(home: Path) -> Path:
    """A hidden temporary folder beside ``home`` (same file system, so rename is
    atomic), made after removing what earlier interrupted writers left there."""
    remove_old_leftovers(home.parent)
    staged = Path(tempfile.mkdtemp(prefix=leftover_prefix(home.name), dir=home.parent))
    staged.chmod(0o755)  # mkdtemp makes it private; what is published is meant to be shared
    return staged


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}
"""What renameat2 answers where the system or the file system cannot exchange."""


def _exchange(first: Path, second: Path) -> None:
    """Swap the names ``first`` and ``second`` in one atomic step (Linux ``renameat2``
    with ``RENAME_EXCHANGE``); OSError ENOSYS where the C library lacks it."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux, or a C library older than glibc 2.28
        raise OSError(errno.ENOSYS, "renameat2 is not available") from None
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(first), None, str(second))


def version_home(dest: Path) -> Path:
    """The folder a new version for ``dest`` is made beside: the one a link at ``dest``
    points to (versions sit together), else ``dest`` itself."""
    if dest.is_symlink():
        target = dest.resolve()
        if target.parent.is_dir():
            return target
    return dest


def _new_version(home: Path, *taken: Path) -> Path:
    """A free version name beside ``home``: ``<name>+<UTC stamp>``, ``<name>`` without an earlier stamp."""
    while True:
        version = home.with_name(f"{version_base(home.name)}+{utc_stamp()}")
        if version not in taken and not os.path.lexists(version):
            return version


def publish(staged: Path, dest: Path, home: Path) -> Path:
    """Put the complete folder ``staged`` (made beside ``home``) at ``dest`` in one
    atomic step; returns the folder that now holds it (docs/design.md, "The bundle").

    * Nothing at ``dest``, or an empty folder: ``staged`` is renamed to it.
    * ``dest`` a link (such as ``artifacts/current``): ``staged`` becomes a new
      version beside the folder it points to, and the link is moved to it.
    * ``dest`` a folder (the caller checked it may be replaced): ``staged`` becomes a new version beside it, and
      ``dest`` is exchanged with a link to that version (``renameat2``); the old
      content stays beside it as the previous version, until pruned.

    Versions are never changed once published, so a reader (or a server lazily
    reading a file) of the old one is never disturbed, and one following ``dest``
    notices the new one.
    """
    if dest.is_symlink():
        version = _new_version(home)
        os.rename(staged, version)
        fsync_dir(version.parent)
        point_current(dest, version)
        return version
    if not os.path.lexists(dest) or (dest.is_dir() and not any(dest.iterdir())):
        os.rename(staged, dest)  # over an empty folder too
        fsync_dir(dest.parent)
        return dest
    old = _new_version(dest)
    new = _new_version(dest, old)
    os.rename(staged, new)
    link = leftover_path(dest)
    os.symlink(new.name, link)
    try:
        _exchange(link, dest)  # dest: now the link to the new version; link: the old folder
    except OSError as err:
        os.unlink(link)
        if err.errno not in _NO_EXCHANGE:
            os.rename(new, staged)  # for the caller to clean up
            raise
        # No exchange on this system: two renames, with a moment between them when
        # dest is missing (Bundle.load then names the versions beside it).
        os.rename(dest, old)
        point_current(dest, new)
        return new
    os.rename(link, old)
    fsync_dir(dest.parent)
    return new


def utc_stamp() -> str:
    """A UTC time stamp for folder names, to the microsecond."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def version_base(name: str) -> str:
    """The name every version of the bundle folder ``name`` shares: ``name`` up to its
    first ``+`` (``mine`` for ``mine`` and for ``mine+20261202T140117955138Z``)."""
    return name.split("+")[0]


def is_version_of(name: str, base: str) -> bool:
    """Whether ``name`` is one :func:`publish` gives a version of the bundle ``base``:
    ``<base>+<UTC stamp>`` (not a folder a user named ``<base>+something``)."""
    return re.fullmatch(rf"{re.escape(base)}\+\d{{8}}T\d{{12}}Z", name) is not None


def point_current(link: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Atomically make the symlink ``link`` point at ``target`` (relative link).

    Temporary links that earlier interrupted calls left beside ``link`` are
    removed once old enough (:func:`remove_old_leftovers`)."""
    link, target = Path(link), Path(target)
    link.parent.mkdir(parents=True, exist_ok=True)
    remove_old_leftovers(link.parent, prefix=leftover_prefix(link.name))
    relative = os.path.relpath(target.resolve(), link.parent.resolve())
    temp = leftover_path(link)
    os.symlink(relative, temp)
    os.replace(temp, link)
    fsync_dir(link.parent)
    return link
