"""ALEWR: adaptive layer- and element-wise regularisation against forgetting general ability.

`importance.compute_importance` measures, once per base, how much each weight of the target
modules contributed to lowering a general-role loss (a synaptic-intelligence path integral);
`penalty.build_penalty` turns that into the drift penalty added to CE, built from the trained
method's weight views (`full`: whole weights anchored at the base; `s2ft`: zero-anchored delta
slices, Ω gathered at the same columns/rows). Methods without weight views are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from core.errors import ConfigError
from trainer.config import check_range, doc
from trainer.methods.base import Method, Prepared
from trainer.regularizers.base import Penalty, Regularizer, RegularizerConfig, RunInputs


@dataclass
class AlewrConfig(RegularizerConfig):
    lambda_: float = doc("λ, weight of the ALEWR penalty; 0 trains exactly as without it", default=1.0)
    balance: float = doc(
        "β > 0 rescales λ each step to λ·β·stopgrad(CE / penalty) (dynamic balance); 0 keeps λ fixed",
        default=0.0,
    )
    importance: str | None = doc(
        "path of the importance file from compute_importance() (per base; never stored with a patch)",
        default=None,
    )

    def problems(self) -> list[str]:
        found = check_range("lambda", self.lambda_, 0.0, float("inf"))
        found += check_range("balance", self.balance, 0.0, float("inf"))
        if self.importance is not None and not isinstance(self.importance, str):
            found.append("importance must be a file path")
        return found


class AlewrRegularizer(Regularizer):
    name = "alewr"
    config_cls = AlewrConfig
    run_inputs = ("importance",)

    def check_method(self, method: Method) -> None:
        if not method.has_weight_views():
            raise ConfigError(unsupported(method))

    def prepare(self, config: RegularizerConfig, run: RunInputs) -> AlewrConfig:
        """Reuse the importance file when it exists (default: beside the patch), else measure it on
        the general rows."""
        assert isinstance(config, AlewrConfig)
        from core.rows import read_rows
        from trainer.regularizers.alewr.importance import compute_importance

        importance = Path(config.importance or run.out_path.with_suffix(".importance.safetensors"))
        if not importance.is_file():
            if run.general_path is None:
                raise ConfigError(
                    "--regularize alewr needs --general GENERAL.jsonl or an existing --importance file"
                )
            rows = read_rows(run.general_path)
            compute_importance(run.model_dir, rows, out_path=importance, seed=run.seed, device=run.device)
        return replace(config, importance=str(importance))

    def penalty(
        self, config: RegularizerConfig, method: Method, prepared: Prepared, device: torch.device
    ) -> Penalty | None:
        from trainer.regularizers.alewr.penalty import build_penalty

        assert isinstance(config, AlewrConfig)
        return build_penalty(method, prepared, config, device)


def unsupported(method: Method) -> str:
    from trainer.methods import get_method, method_names

    able = [n for n in method_names() if get_method(n).has_weight_views()]
    return f"method {method.name!r} does not support regularize='alewr' (use {' or '.join(able)})"
