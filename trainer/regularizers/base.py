"""The contract every regulariser fulfils: a validated config, and a penalty the loop adds to CE.

A regulariser sits beside the methods, not inside them: it sees a method only through the method's
generic `weight_views` (each trainable tensor as a view of one base weight) and refuses methods
that offer none. The loop receives a `Regularization` (a regulariser and its config) and calls it;
the loop imports from here only for type hints and inside `train_to_patch`, and nothing here
imports the loop (the importance pass, in `alewr/importance.py`, uses its optimiser).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from trainer.config import Config
from trainer.methods.base import Method, Prepared

Penalty = Callable[[float], torch.Tensor | None]  # CE value of the step -> extra loss to backprop


@dataclass
class RegularizerConfig(Config):
    """Base of every regulariser config. Subclasses add fields and extend `problems()`."""


@dataclass(frozen=True)
class RunInputs:
    """What a run offers a regulariser before training (`Regularizer.prepare`)."""

    model_dir: Path
    out_path: Path  # where the patch goes; per-run files may default to beside it
    general_path: Path | None = None  # general-role rows, if given
    seed: int = 0
    device: str = "auto"


class Regularizer(ABC):
    """A regulariser. Subclasses set `name` and `config_cls`; `run_inputs` lists the public names
    of per-run settings (file paths) that are never stored with a patch."""

    name: ClassVar[str]
    config_cls: ClassVar[type[RegularizerConfig]]
    run_inputs: ClassVar[tuple[str, ...]] = ()

    def check_method(self, method: Method) -> None:
        """Refuse, with a ConfigError, a method this regulariser cannot work with (before any
        model is loaded). The default accepts every method."""
        return None

    def prepare(self, config: RegularizerConfig, run: RunInputs) -> RegularizerConfig:
        """The config made ready to train with (e.g. a measured input file filled in)."""
        return config

    @abstractmethod
    def penalty(
        self, config: RegularizerConfig, method: Method, prepared: Prepared, device: torch.device
    ) -> Penalty | None:
        """The penalty for this run, or None when it would add nothing (training is then plain)."""

    def stored(self, config: RegularizerConfig) -> dict[str, Any]:
        """The settings kept with a patch: the config's dict without per-run inputs."""
        return {k: v for k, v in config.to_dict().items() if k not in self.run_inputs}


@dataclass(frozen=True)
class Regularization:
    """A regulariser with its validated config: what `trainer.loop.train` takes."""

    regularizer: Regularizer
    config: RegularizerConfig

    def __post_init__(self) -> None:
        if not isinstance(self.config, self.regularizer.config_cls):
            raise TypeError(
                f"regulariser {self.regularizer.name!r} takes a {self.regularizer.config_cls.__name__}, "
                f"not a {type(self.config).__name__}"
            )

    @property
    def name(self) -> str:
        return self.regularizer.name

    def replace(self, **changes: Any) -> Regularization:
        """The same regulariser with some config fields changed (and validated again)."""
        return Regularization(self.regularizer, dataclasses.replace(self.config, **changes))

    def check_method(self, method: Method) -> None:
        self.regularizer.check_method(method)

    def prepare(self, run: RunInputs) -> Regularization:
        return Regularization(self.regularizer, self.regularizer.prepare(self.config, run))

    def penalty(self, method: Method, prepared: Prepared, device: torch.device) -> Penalty | None:
        return self.regularizer.penalty(self.config, method, prepared, device)

    def stored(self) -> dict[str, Any]:
        return self.regularizer.stored(self.config)
