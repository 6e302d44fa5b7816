"""Loading saved transformers models and tokenizers, in one place.

Our own commands show their own progress; transformers' per-load bars ("Loading weights") would
interleave with them, so they are turned off here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _quiet() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_tokenizer(model_dir: Path | str) -> Any:
    from transformers import AutoTokenizer

    _quiet()
    return AutoTokenizer.from_pretrained(model_dir)


def load_causal_lm(model_dir: Path | str, dtype: Any = "auto") -> Any:
    from transformers import AutoModelForCausalLM

    _quiet()
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)


def resolve_device(name: str = "auto") -> Any:
    """`auto` → CUDA when present, else CPU; `cuda` without a GPU is an error, not a silent CPU run."""
    import torch

    from core.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for, but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; choose auto, cuda or cpu")
    return torch.device(name)
