"""Progress bars on stderr for long work; silent when stderr is not a terminal or under --json."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def byte_progress(description: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A callback `(done_bytes, total_bytes)` that drives one bar."""
    bar: tqdm | None = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit="B", unit_scale=True, leave=False, disable=None)
        bar.update(done - bar.n)

    try:
        yield update if enabled else (lambda _d, _t: None)
    finally:
        if bar is not None:
            bar.close()
