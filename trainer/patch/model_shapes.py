"""Weight shapes of a saved model without loading its weights (meta device), for export checks."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from trainer.patch.targets import all_targets


def target_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """{target: (out, in)} for every patch target of `model`: Linear, Conv1D (its [out, in] view,
    the transpose of what it stores) and each expert of a 3-D expert parameter (`<param>.<e>`)."""
    return {name: t.shape for name, t in all_targets(model).items()}


def meta_model(model_dir: Path | str) -> nn.Module:
    """Instantiate the causal LM described by `model_dir`'s config on the meta device: module names
    and shapes are real, no memory is allocated and no weights are read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(Path(model_dir))
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)
