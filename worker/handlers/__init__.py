"""One handler per job kind: `handler(ctx) -> result` (JSON), run by `worker.runner`."""

from __future__ import annotations

from worker.handlers import evaluate, importance, port, port_all, train

HANDLERS = {
    "train": train.run,
    "importance": importance.run,
    "port_all": port_all.run,
    "port": port.run,
    "evaluate": evaluate.run,
}
