"""Peak memory of one streamed operation, measured in a fresh process.

    python -m bench.rss merge BASE_DIR PATCH OUT_DIR     # the streamed merged export
    python -m bench.rss stats BASE_A BASE_B PATCH        # the portability statistics

Prints one JSON object: the peak increase of anonymous and file-backed resident memory over the
level after imports and after loading the patch (sampled every millisecond), and the seconds taken.
Both kinds count: a memory map's touched pages stay resident (file-backed) until it is closed, so an
operation that keeps every shard mapped grows RssFile with the model even when RssAnon stays flat.
Used by `bench/release_day.py` and by the memory tests of the merge and the statistics.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def resident() -> tuple[int, int]:
    """(RssAnon, RssFile) of this process, in bytes."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) * 1024
    return fields["RssAnon"], fields["RssFile"]


def peak_increase(work: Callable[[], Any]) -> dict[str, float]:
    """Run `work` while a thread samples `resident()` every millisecond; the peak increases."""
    anon0, file0 = resident()
    peak = [anon0, file0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            anon, file = resident()
            peak[0], peak[1] = max(peak[0], anon), max(peak[1], file)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        work()
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    anon, file = resident()
    peak = [max(peak[0], anon), max(peak[1], file)]
    return {"anon_bytes": peak[0] - anon0, "file_bytes": peak[1] - file0, "seconds": round(seconds, 3)}


def main(argv: list[str]) -> None:
    from trainer.patch.io import load_patch

    what, *paths = argv
    if what == "merge":
        from trainer.patch.merge import merge_into_directory

        base, patch_path, out = paths
        patch = load_patch(patch_path)
        result = peak_increase(lambda: merge_into_directory(base, patch, out))
    elif what == "stats":
        from trainer.port.stats import portability_stats

        base_a, base_b, patch_path = paths
        patch = load_patch(patch_path)
        result = peak_increase(lambda: portability_stats(patch, base_a, base_b))
    else:
        raise SystemExit(f"unknown measurement {what!r}: merge or stats")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
