"""Walk a documents folder so that every entry on disk is accounted for and nothing outside the
folder is read.

Each entry is either a file to load (a regular file whose real path lies inside the folder) or a
``SkippedSource`` with the reason: hidden (a name starting with a dot, unless asked for; a
hidden folder is one entry that says how many entries it holds), a symbolic link that leads
outside the folder or nowhere, a link to a folder (its files are loaded under their own path),
not a regular file (a FIFO would block the reader), a name that is not valid UTF-8, or a folder
that cannot be listed. Links are never followed while walking, so a cycle cannot loop.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from flowkit_prefect.retrieval.types import SkippedSource

HIDDEN_HINT = "pass include_hidden=True to load hidden entries"


def _source(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _printable(source: str) -> str | None:
    """The source id, or None when the name is not valid UTF-8 (it could not be stored)."""
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return source


def _count_entries(folder: Path) -> int:
    count = 0
    for _, dirs, files in os.walk(folder, followlinks=False):
        count += len(dirs) + len(files)
    return count


Entry = tuple[Path, str] | SkippedSource
"""A file to load, as (path, source id), or an entry skipped with its reason."""


def _inside(real: Path, root: Path) -> bool:
    return real == root or root in real.parents


def walk_folder(root: Path, include_hidden: bool = False) -> Iterator[Entry]:
    """Every entry under ``root``, in sorted order: ``(path, source)`` to load, or skipped."""
    real_root = root.resolve()
    yield from _walk(root, real_root, root, include_hidden)


def _walk(root: Path, real_root: Path, folder: Path, include_hidden: bool) -> Iterator[Entry]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        source = _source(root, folder) if folder != root else "."
        yield SkippedSource(
            source=source, reason=f"unreadable folder: {exc.strerror or exc}; nothing in it read"
        )
        return
    for entry in entries:
        path = Path(entry.path)
        source = _printable(_source(root, path))
        if source is None:
            yield SkippedSource(
                source=os.fsencode(_source(root, path)).decode("utf-8", "backslashreplace"),
                reason="the file name is not valid UTF-8; rename it to load it",
            )
            continue
        hidden = entry.name.startswith(".")
        try:
            is_link = entry.is_symlink()
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError as exc:
            yield SkippedSource(source=source, reason=f"unreadable: {exc.strerror or exc}")
            continue
        if hidden and not include_hidden:
            if is_dir:
                inside = _count_entries(path)
                yield SkippedSource(
                    source=source + "/",
                    reason=f"hidden folder ({inside} entries inside, not read); {HIDDEN_HINT}",
                )
            else:
                yield SkippedSource(source=source, reason=f"hidden file; {HIDDEN_HINT}")
            continue
        if is_link:
            yield from _link(path, source, real_root)
        elif is_dir:
            yield from _walk(root, real_root, path, include_hidden)
        else:
            yield from _file(path, source, real_root)


def _link(path: Path, source: str, real_root: Path) -> Iterator[Entry]:
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing target, or a loop of links
        yield SkippedSource(source=source, reason="unreadable: broken symbolic link")
        return
    if not _inside(real, real_root):
        yield SkippedSource(
            source=source,
            reason="symbolic link to a path outside the folder: not read",
        )
    elif real.is_dir():
        yield SkippedSource(
            source=source,
            reason="symbolic link to a folder inside the folder: its files load under their own "
            "path",
        )
    else:
        yield from _file(path, source, real_root)


def _file(path: Path, source: str, real_root: Path) -> Iterator[Entry]:
    try:
        info = path.stat()
        real = path.resolve(strict=True)
    except OSError as exc:
        yield SkippedSource(source=source, reason=f"unreadable: {exc.strerror or exc}")
        return
    if not _inside(real, real_root):  # a parent swapped for a link while walking
        yield SkippedSource(source=source, reason="its real path lies outside the folder: not read")
    elif not stat.S_ISREG(info.st_mode):
        yield SkippedSource(
            source=source, reason="not a regular file (a device, FIFO or socket): not read"
        )
    else:
        yield path, source
