"""The method × architecture matrix as numbers: for every model type in the catalog and every
method, train a tiny random model a few steps (as `tests/trainer/test_arch_matrix.py` does) and
print how far apart the trained model, our apply, the PEFT export and the merged export are.

    .venv/bin/python bench/arch_matrix.py > matrix.md
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path


def main() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    from peft import PeftModel

    from core.errors import ConfigError
    from tests.trainer.test_arch_matrix import METHODS, Zoo, _load, _logits, _train
    from trainer import zoo
    from trainer.patch.apply import apply_patch
    from trainer.patch.merge import merge_into_directory
    from trainer.patch.peft_export import export_peft
    from trainer.patch.targets import all_targets

    models = Zoo(Path(tempfile.mkdtemp()))
    columns = ["model_type", "method", "weights patched", "params", "max abs(apply − trained)"]
    columns += ["max abs(PEFT − apply)", "max abs(merged − apply)"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for model_type in zoo.MODEL_TYPES:
        for method in METHODS:
            base = models.base(model_type)
            model = _load(base)
            patch, trained, _ = _train(model, method)
            with apply_patch(model, patch):
                applied = _logits(model)
            out = Path(tempfile.mkdtemp())
            shapes = {n: t.shape for n, t in all_targets(model).items()}
            try:
                export_peft(patch, out / "peft", str(base), module_shapes=shapes)
                peft = _logits(PeftModel.from_pretrained(_load(base), out / "peft").eval())
                peft_gap = f"{float((peft - applied).abs().max()):.1e}"
            except ConfigError:
                peft_gap = "merged only"
            merged = _logits(_load(merge_into_directory(base, patch, out / "merged")))
            print(
                f"| {model_type} | {method} | {len(patch.deltas)} | {patch.num_params:,} | "
                f"{float((applied - trained).abs().max()):.1e} | {peft_gap} | "
                f"{float((merged - applied).abs().max()):.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
