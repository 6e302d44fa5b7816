"""Atomic writes: a reader sees either nothing or the whole file/directory, never a half-written one.

A crash mid-write leaves only a hidden temp entry beside the target, which the next write ignores.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from core.errors import AlreadyExists, InvalidInput


def fsync_dir(directory: Path) -> None:
    """Make a rename durable: the new directory entry lives in the parent's metadata."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_beside(path: Path) -> Path:
    return path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write `data` to a temp file in the same directory, fsync it, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def ensure_output_dir_free(out_dir: Path) -> None:
    """Refuse to overwrite: an existing non-empty output is someone's data."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise AlreadyExists(f"output directory {out_dir} already exists and is not empty")


@contextlib.contextmanager
def atomic_output_dir(out_dir: Path | str) -> Iterator[Path]:
    """Yield a temp directory beside `out_dir`; on success fsync its files and rename it into place.

    On any error the temp directory is removed and `out_dir` is left as it was.
    """
    out_dir = Path(out_dir)
    ensure_output_dir_free(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(out_dir)
    tmp.mkdir()
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                with open(file, "rb") as fh:
                    os.fsync(fh.fileno())
        ensure_output_dir_free(out_dir)
        try:
            os.replace(tmp, out_dir)  # rename(2) replaces an empty directory, fails on a non-empty one
        except OSError as exc:
            raise InvalidInput(f"cannot move output into {out_dir}: {exc.strerror}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(out_dir.parent)
