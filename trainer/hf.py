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
