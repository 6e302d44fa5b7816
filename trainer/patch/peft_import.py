"""Import a PEFT adapter directory as a patch: the inverse of `peft_export`.

Only adapters whose effect is a base-independent weight delta are accepted, because a patch must
port to other base versions unchanged: plain LoRA (-> lowrank) and IA3 output scaling (-> scale).
LoRA on MoE expert parameters (`target_parameters`) becomes one lowrank per expert, and Conv1D
adapters (`fan_in_fan_out`, GPT-2) import as they are: PEFT keeps their factors [out, in] too
(`trainer.patch.peft_experts`).
Everything that changes what the adapter computes in other ways (DoRA, biases, extra trainable
modules, input scaling, ...) is refused with a ConfigError naming the setting; a damaged directory
(missing files or tensors, bad shapes) raises MalformedFile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.errors import ConfigError, MalformedFile
from core.peft_config import CONFIG_FILE, lora_settings, read_config
from trainer.patch.peft_experts import adapted_param, check_target_parameters, unpack
from trainer.patch.types import LowRank, Patch, Scale

WEIGHTS_FILE = "adapter_model.safetensors"
PICKLE_FILE = "adapter_model.bin"
PREFIX = "base_model.model."
KEEP_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Settings that make a LoRA adapter compute something other than W + scale·B·A: (field, why).
LORA_UNSUPPORTED = (
    ("use_dora", "DoRA rescales the weight's column norms, which depends on the base"),
    ("modules_to_save", "modules_to_save stores full copies of base modules, which do not port"),
    ("lora_bias", "lora_bias adds a trained bias, which a patch cannot hold"),
    ("trainable_token_indices", "trainable_token_indices trains embedding rows, which do not port"),
    ("layer_replication", "layer_replication changes the model's layer structure"),
    ("alora_invocation_tokens", "activated LoRA only acts after invocation tokens"),
    ("use_qalora", "QA-LoRA pools inputs before lora_A"),
    ("use_bdlora", "BD-LoRA uses block-diagonal factors"),
    ("arrow_config", "Arrow routes between several LoRAs"),
    ("kasa_config", "KaSA changes the LoRA forward"),
    ("velora_config", "VeLoRA changes the LoRA forward"),
    ("monteclora_config", "MonteCLoRA samples its LoRA weights"),
)
# Initialisations that subtract the adapter's starting point from the base weights: the adapter is
# then relative to a modified base unless PEFT converted it when saving.
BASE_MODIFYING_INITS = ("pissa", "olora", "corda", "loftq", "eva")
IA3_UNSUPPORTED = (
    ("modules_to_save", "modules_to_save stores full copies of base modules, which do not port"),
)


def _read_config(directory: Path) -> dict[str, Any]:
    """The config, parsed within `core.inputs` limits and typed (`core.peft_config`)."""
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise MalformedFile(f"{directory}: no such adapter directory")
    if not path.is_file():
        raise MalformedFile(f"{directory}: no {CONFIG_FILE} (not a PEFT adapter directory?)")
    return read_config(path.read_bytes())


def _read_tensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = directory / WEIGHTS_FILE
    if not path.is_file():
        if (directory / PICKLE_FILE).is_file():
            raise MalformedFile(
                f"{directory}: only {PICKLE_FILE} found; convert it to {WEIGHTS_FILE} (load the adapter "
                "with PEFT and save_pretrained(..., safe_serialization=True))"
            )
        raise MalformedFile(f"{directory}: no {WEIGHTS_FILE}")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error type for every kind of bad header
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MalformedFile(f"{path}: not a valid safetensors file ({reason})") from None
    if not tensors:
        raise MalformedFile(f"{path}: adapter has no tensors")
    for key, tensor in tensors.items():
        if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
            raise MalformedFile(f"{path}: tensor '{key}' is not a finite float tensor")
    return tensors


def _refuse(config: dict[str, Any], table: tuple[tuple[str, str], ...], peft_type: str) -> None:
    for field, why in table:
        if config.get(field):
            raise ConfigError(f"PEFT {peft_type} adapter with {field}={config[field]!r}: {why}")


def _split_key(key: str, suffixes: tuple[str, ...]) -> tuple[str, str]:
    """('model.layers.0.self_attn.q_proj', suffix) for a PEFT key, or MalformedFile."""
    name = key.removeprefix(PREFIX)
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name.removesuffix(suffix), suffix
    raise MalformedFile(
        f"unexpected adapter tensor '{key}' (expected names ending in {' or '.join(suffixes)})"
    )


def _float(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.dtype in KEEP_DTYPES else tensor.to(torch.float32)


def _lora(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, LowRank]:
    _refuse(config, LORA_UNSUPPORTED, "LORA")
    if config.get("bias", "none") != "none":
        raise ConfigError(f"PEFT LORA adapter with bias={config['bias']!r}: trained biases do not port")
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(BASE_MODIFYING_INITS):
        raise ConfigError(
            f"PEFT LORA adapter with init_lora_weights={init!r} is relative to a modified base; save it "
            "with path_initial_model_for_weight_conversion to get a plain LoRA first"
        )
    settings = lora_settings(config)
    parameters = config.get("target_parameters") or []
    check_target_parameters(parameters)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        name, suffix = _split_key(key, (".lora_A.weight", ".lora_B.weight"))
        pairs.setdefault(name, {})[suffix[6]] = tensor  # "A" or "B"
    deltas: dict[str, LowRank] = {}
    for name, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            lacking = "B" if "A" in pair else "A"
            raise MalformedFile(f"module '{name}': adapter has no lora_{lacking}.weight")
        a, b = _float(pair["A"]), _float(pair["B"])
        param = adapted_param(name, parameters)
        r, scale = settings.scale(name if param is None else param)  # what the patterns match
        if param is not None:
            deltas.update(unpack(param, a, b, r, scale))
            continue
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise MalformedFile(
                f"module '{name}': lora_A {list(a.shape)} and lora_B {list(b.shape)} "
                "are not [r, in] and [out, r]"
            )
        if r != a.shape[0]:
            raise MalformedFile(f"module '{name}': config rank {r} but lora_A has rank {a.shape[0]}")
        deltas[name] = LowRank(A=a, B=b, scale=scale)
    if not deltas:
        raise ConfigError("PEFT LORA adapter changes nothing (every expert's lora_A or lora_B is zero)")
    return deltas


def _ia3(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Scale]:
    _refuse(config, IA3_UNSUPPORTED, "IA3")
    deltas = {}
    for key, tensor in sorted(tensors.items()):
        name, _ = _split_key(key, (".ia3_l",))
        if tensor.ndim == 2 and tensor.shape[0] == 1 and tensor.shape[1] > 1:
            raise ConfigError(
                f"module '{name}': IA3 feed-forward (input) scaling ia3_l {list(tensor.shape)} has no "
                "base-independent patch form (patch scale deltas scale outputs; train IA3 with "
                "feedforward_modules=[])"
            )
        if tensor.ndim != 2 or tensor.shape[1] != 1:
            raise MalformedFile(f"module '{name}': ia3_l must be [out, 1], found {list(tensor.shape)}")
        deltas[name] = Scale(s=tensor.reshape(-1).to(torch.float32))
    return deltas


def _subset(config: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {f: config[f] for f in fields if config.get(f) is not None}


def import_peft(adapter_dir: Path | str, method_name: str | None = None) -> Patch:
    """Read `adapter_config.json` + `adapter_model.safetensors` from `adapter_dir` as a Patch.

    LORA -> lowrank deltas with scale lora_alpha/r (lora_alpha/√r with rsLoRA; rank_pattern and
    alpha_pattern honoured per module), one per expert for `target_parameters`; IA3 output scaling
    -> scale deltas. `method_name` defaults to "lora" / "ia3". The adapter's base
    (`base_model_name_or_path`, `revision`) goes into metadata.
    """
    directory = Path(adapter_dir)
    config = _read_config(directory)
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type not in ("LORA", "IA3"):
        raise ConfigError(f"PEFT type {config.get('peft_type')!r} is not supported (only LORA and IA3)")
    tensors = _read_tensors(directory)
    if peft_type == "LORA":
        deltas: dict[str, Any] = _lora(config, tensors)
        fields: tuple[str, ...] = (
            "r",
            "lora_alpha",
            "use_rslora",
            "rank_pattern",
            "alpha_pattern",
            "target_modules",
            "target_parameters",
        )
    else:
        deltas = _ia3(config, tensors)
        fields = ("target_modules", "feedforward_modules")
    metadata = {"source": "peft"}
    for field in ("base_model_name_or_path", "revision"):
        if config.get(field):
            metadata[f"peft_{field}"] = str(config[field])
    return Patch(
        method=method_name or peft_type.lower(),
        method_config=_subset(config, fields),
        deltas=deltas,
        metadata=metadata,
    )
