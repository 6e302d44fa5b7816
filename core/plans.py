"""What the registry hands the worker to measure, and what the worker hands back: plain data.

A registry service builds a plan inside one transaction (which files to read, which numbers are
already stored); the trainer measures without a database; another registry service records the
measurement and the gate's decision, together with the job's completion, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Metrics = dict[str, Any]


@dataclass(frozen=True)
class EvalSet:
    """One readable eval dataset, as a verified local file."""

    dataset_id: int
    name: str  # "domain/name"
    path: Path


@dataclass(frozen=True)
class Arm:
    """One model an eval dataset is measured on: a base alone or with the patch applied."""

    on_source_base: bool  # False: the base the patch is judged on; True: the patch's own earlier base
    with_patch: bool


# A port compares four arms; an evaluation of a trained patch, two. The keys are what reports show.
PORT_ARMS: dict[str, Arm] = {
    "base": Arm(on_source_base=False, with_patch=False),
    "ported": Arm(on_source_base=False, with_patch=True),
    "source_base": Arm(on_source_base=True, with_patch=False),
    "source": Arm(on_source_base=True, with_patch=True),
}
EVALUATE_ARMS: dict[str, Arm] = {
    "base": Arm(on_source_base=False, with_patch=False),
    "patch": Arm(on_source_base=False, with_patch=True),
}


@dataclass(frozen=True)
class MeasurePlan:
    """Everything the trainer needs to measure one patch, and nothing it must look up.

    `stored[(dataset_id, arm)]` holds numbers already recorded (they are reused, not re-measured);
    a missing key means "measure it". `portability` asks for the streamed statistics between the
    source base and the base (a port); evaluation always includes the no-op check on the base.
    """

    patch_path: Path
    base_dir: Path
    source_base_dir: Path | None = None
    eval_sets: tuple[EvalSet, ...] = ()
    arms: dict[str, Arm] = field(default_factory=lambda: dict(EVALUATE_ARMS))
    stored: dict[tuple[int, str], Metrics] = field(default_factory=dict)
    portability: bool = False


@dataclass(frozen=True)
class Measurement:
    """What the trainer measured: per eval dataset `{"dataset": name, <arm>: metrics, ...}`."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    noop: dict[str, Any] | None = None  # the no-op check on the base (None: nothing was evaluated)
    portability: dict[str, Any] | None = None


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on a measured patch: `validated` or `degraded`, with the reason people read."""

    status: str
    why: str
    metrics: dict[str, Any] = field(default_factory=dict)  # what the patch row keeps (loss, accuracy…)
