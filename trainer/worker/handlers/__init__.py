"""One handler per job kind: `handler(ctx) -> result` (JSON), run by `trainer.worker.runner`."""

from __future__ import annotations

from trainer.worker.handlers import evaluate, importance, port, port_all, train

HANDLERS = {
    "train": train.run,
    "importance": importance.run,
    "port_all": port_all.run,
    "port": port.run,
    "evaluate": evaluate.run,
}
