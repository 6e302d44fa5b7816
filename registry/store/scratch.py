"""Temp space the registry owns: `<store>/tmp/`, never the system TMPDIR.

Upload spools, blobs being written and export scratch directories live here, so that whatever a
killed process (kill -9, OOM, power loss) leaves behind sits in one known place and is swept:
at server and worker start, and by `patchreg gc`. Sweeps are age-guarded: an entry is stale only
when nothing inside it changed for `older_than` seconds, so a concurrent process's in-flight
upload (which keeps writing) or conversion is never touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Leftover:
    """One stale entry directly under the temp root (a file or a whole directory)."""

    path: Path
    size: int  # bytes, summed over a directory's files
    age: float  # seconds since anything inside it last changed


class Scratch:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def mkdtemp(self, prefix: str) -> Path:
        """A private directory for one request or job; the caller removes it when done."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.root, prefix=prefix))

    def mkstemp(self, prefix: str) -> tuple[int, str]:
        self.root.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=self.root, prefix=prefix)

    def leftovers(self, older_than: float, now: float | None = None) -> list[Leftover]:
        """Entries under the root untouched for at least `older_than` seconds, oldest first."""
        now = time.time() if now is None else now
        found = []
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        for entry in entries:
            stat = _tree_stat(Path(entry.path))
            if stat is None:
                continue  # removed meanwhile: its owner finished
            size, newest = stat
            if now - newest >= older_than:
                found.append(Leftover(Path(entry.path), size, now - newest))
        return sorted(found, key=lambda leftover: -leftover.age)

    def sweep(self, older_than: float) -> list[Leftover]:
        """Remove the stale entries; returns what went."""
        return [lo for lo in self.leftovers(older_than) if self.remove_if_stale(lo.path, older_than)]

    def remove_if_stale(self, path: Path, older_than: float) -> bool:
        """Remove one entry under the root if it is still untouched for `older_than` seconds (checked
        again now: its owner may have written to it since it was listed)."""
        if path.parent != self.root:
            raise ValueError(f"{path.name} is not directly under the temp root")
        stat = _tree_stat(path)
        if stat is None or time.time() - stat[1] < older_than:
            return False
        return _remove(path)


def _tree_stat(path: Path) -> tuple[int, float] | None:
    """(total bytes, newest mtime) of a file or a directory tree; None if it vanished."""
    try:
        stat = path.lstat()
    except FileNotFoundError:
        return None
    size, newest = (0 if path.is_dir() else stat.st_size), stat.st_mtime
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in (*dirnames, *filenames):
                try:
                    inner = os.lstat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                newest = max(newest, inner.st_mtime)
                if name in filenames:
                    size += inner.st_size
    return size, newest


def _remove(path: Path) -> bool:
    """Remove a file or tree; False when it was already gone (another sweep took it)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        return not path.exists()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
