"""Weight shapes of a saved model without loading its weights (meta device), for export checks."""

from __future__ import annotations

from pathlib import Path

from torch import nn


def linear_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """{module name: (out_features, in_features)} for every nn.Linear in `model`."""
    return {
        name: (int(m.weight.shape[0]), int(m.weight.shape[1]))
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
    }


def meta_model(model_dir: Path | str) -> nn.Module:
    """Instantiate the causal LM described by `model_dir`'s config on the meta device: module names
    and shapes are real, no memory is allocated and no weights are read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(Path(model_dir))
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)
