"""What the demo builds and trains: one plan for the full run, one for `--quick`.

The numbers were chosen by measurement on the tiny family (2 CPU cores, one torch thread), not
to force an outcome; whatever the gates decide is what the demo prints:
- v1 is pretrained for 200 steps, v2 is v1 trained 4 steps further on other text. The tiny
  weights are small next to Adam's step (lr 3e-3), so even a few steps are a real release: some
  ports keep most of their source gain, some do not.
- the domain has 128 train rows and 128 two-choice eval rows drawn from them, so one row moves
  accuracy by 0.008 (32 rows would move it by 0.031, coarser than most of the gains here).
- every method trains 200 steps of 8 rows at lr 0.01; S²FT trains 20% of the weights (its
  default 1% cannot learn 128 paragraphs), ALEWR weighs its penalty by 0.01 (at the default 1 the
  penalty holds every weight in place and the patch learns nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.family import FamilySpec

FAMILY = "tiny"
DOMAIN = "docs"
DOMAIN_DESCRIPTION = "Python's own documentation (pydoc topics held out of pretraining)"
V1, V2 = f"{FAMILY}:v1", f"{FAMILY}:v2"
TRAIN, EVAL, GENERAL = "train", "eval", "general"  # the dataset names, one per role


@dataclass(frozen=True)
class Training:
    """One patch the demo trains on v1: a method, its settings, and an optional regulariser."""

    method: str
    overrides: tuple[str, ...] = ()
    regularize: str | None = None

    @property
    def label(self) -> str:
        return self.method + (f"+{self.regularize}" if self.regularize else "")


@dataclass(frozen=True)
class Plan:
    name: str  # "full" or "quick"
    family: FamilySpec
    n_train: int
    n_eval: int
    n_general: int
    steps: int
    lr: float
    batch_size: int
    trainings: tuple[Training, ...]

    def models_dir(self, home: Path) -> Path:
        return home / "models" / ("tiny" if self.name == "full" else f"tiny-{self.name}")

    @property
    def args(self) -> dict[str, Any]:
        return {"steps": self.steps, "lr": self.lr, "batch_size": self.batch_size}

    def train_command(self, t: Training) -> str:
        words = ["patchreg train", DOMAIN, "--base", V1, "--method", t.method]
        if t.regularize:
            words += ["--regularize", t.regularize]
        for setting in t.overrides:
            words += ["--set", setting]
        words += ["--steps", str(self.steps), "--lr", f"{self.lr:g}", "--batch-size", str(self.batch_size)]
        return " ".join(words)


TRAININGS = (
    Training("lora"),
    Training("s2ft", ("budget=0.2",)),
    Training("propulsion"),
    Training("s2ft", ("budget=0.2", "alewr_lambda=0.01"), regularize="alewr"),
)

FULL = Plan(
    name="full",
    family=FamilySpec(v1_steps=200, v2_steps=4),
    n_train=128,
    n_eval=128,
    n_general=64,
    steps=200,
    lr=1e-2,
    batch_size=8,
    trainings=TRAININGS,
)

QUICK = Plan(
    name="quick",
    family=FamilySpec(v1_steps=60, v2_steps=4),
    n_train=32,
    n_eval=32,
    n_general=16,
    steps=40,
    lr=1e-2,
    batch_size=4,
    trainings=TRAININGS,
)
