"""The training loop shared by every method: AdamW, warmup + decay, accumulation, clipping.

On CUDA the base is loaded in bf16 and runs under bf16 autocast, with fp32 trainable tensors;
plain fp32 on CPU. Micro-batches within a token budget and gradient checkpointing bound the
activation memory of large models. Seeded end to end (init, shuffling), so the same seed on
CPU gives the same patch bit for bit. The loss is the token-weighted mean over each accumulation
group (not a mean of micro-batch means), so accumulation does not change what is optimised.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ConfigError
from core.method_config import stored_config
from core.rows import Row
from trainer.config import check_choice, check_range
from trainer.data import Example, as_rows, encode_rows, iter_batches, pad_token_id
from trainer.methods.base import Method, MethodConfig
from trainer.patch.types import Patch

if TYPE_CHECKING:  # the loop calls what it is given; it imports no regulariser at import time
    from trainer.regularizers.base import Penalty, Regularization
    from trainer.resident import ResidentModels

SCHEDULES = ("cosine", "linear", "constant")
# Gradient checkpointing is on by default from here: at 1B parameters and 2k-token sequences,
# stored activations (layers × batch × seq × hidden × ~34 bytes in bf16) pass the weights' own
# 2 GB at a batch of 2, and they grow with every layer; below it they are small next to the model.
CHECKPOINTING_MIN_PARAMS = 1_000_000_000


@dataclass
class TrainArgs:
    """Optimisation settings. `steps` (optimizer steps) wins over `epochs` when set."""

    lr: float | None = None  # None: the method's default_lr
    steps: int | None = None
    epochs: float = 1.0
    batch_size: int = 4
    grad_accum: int = 1
    warmup_steps: int = 0
    schedule: str = "cosine"
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = 1.0
    max_length: int = 256
    seed: int = 0
    device: str = "auto"
    # Split each batch into micro-batches of at most this many (padded) tokens; the step and its
    # loss are the same, peak activation memory is bounded. None: whole batches.
    max_tokens_per_batch: int | None = None
    # Recompute activations in backward (~30% more compute, activation memory / layers). None:
    # on for models of ≥ CHECKPOINTING_MIN_PARAMS parameters, where activations dominate memory.
    gradient_checkpointing: bool | None = None

    def __post_init__(self) -> None:
        found = []
        if self.lr is not None:
            found += check_range("lr", self.lr, 0.0, 1.0, lo_open=True)
        for name in ("batch_size", "grad_accum", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                found.append(f"{name}={value!r} must be an integer ≥ 1")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            found.append(f"steps={self.steps!r} must be an integer ≥ 1")
        found += check_range("epochs", self.epochs, 0.0, 1e6, lo_open=True)
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            found.append(f"warmup_steps={self.warmup_steps!r} must be an integer ≥ 0")
        found += check_choice("schedule", self.schedule, SCHEDULES)
        found += check_range("weight_decay", self.weight_decay, 0.0, 10.0)
        if self.max_grad_norm is not None:
            found += check_range("max_grad_norm", self.max_grad_norm, 0.0, float("inf"), lo_open=True)
        found += check_choice("device", self.device, ("auto", "cpu", "cuda"))
        if self.max_tokens_per_batch is not None and (
            isinstance(self.max_tokens_per_batch, bool)
            or not isinstance(self.max_tokens_per_batch, int)
            or self.max_tokens_per_batch < 1
        ):
            found.append(f"max_tokens_per_batch={self.max_tokens_per_batch!r} must be an integer ≥ 1")
        if self.gradient_checkpointing not in (None, True, False):
            found.append(f"gradient_checkpointing={self.gradient_checkpointing!r} must be true or false")
        if found:
            raise ConfigError("invalid training arguments: " + "; ".join(found))

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device='cuda' but no CUDA device is available")
        return torch.device(self.device)


@dataclass
class Progress:
    """What the progress callback receives after every optimizer step."""

    step: int
    total_steps: int
    loss: float
    lr: float
    tokens_per_s: float
    eta_s: float
    elapsed_s: float
    penalty: float | None = None


@dataclass
class TrainResult:
    patch: Patch
    losses: list[float]
    steps: int
    tokens: int
    seconds: float
    trainable_params: int
    step_seconds: list[float] = field(default_factory=list)
    peak_gpu_bytes: int | None = None  # torch.cuda.max_memory_allocated over the run (CUDA only)
    gradient_checkpointing: bool = False

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class StepObserver(Protocol):
    """Sees the parameters right before and after each optimizer step (post-clip gradients)."""

    def before_step(self, params: dict[str, nn.Parameter]) -> None: ...

    def after_step(self, params: dict[str, nn.Parameter]) -> None: ...


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warmup over `warmup` steps, then cosine or linear decay to 0 at `total`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def total_steps(args: TrainArgs, n_examples: int) -> int:
    if args.steps is not None:
        return args.steps
    per_epoch = math.ceil(n_examples / args.batch_size)
    return max(1, math.ceil(args.epochs * per_epoch / args.grad_accum))


def _batches(examples: Sequence[Example], args: TrainArgs, pad_id: int) -> Iterator[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(args.seed)
    while True:
        yield from iter_batches(examples, args.batch_size, pad_id, generator)


def micro_batches(batch: dict[str, torch.Tensor], max_tokens: int | None) -> list[dict[str, torch.Tensor]]:
    """`batch` split by rows so each piece holds at most `max_tokens` padded tokens (one row at
    least); the whole batch when there is no budget."""
    rows, length = batch["input_ids"].shape
    if max_tokens is None or rows * length <= max_tokens:
        return [batch]
    per = max(1, max_tokens // length)
    return [{k: v[i : i + per] for k, v in batch.items()} for i in range(0, rows, per)]


def _autocast(device: torch.device, model: nn.Module) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA; on CPU only for a bf16 base, whose fp32 trainable tensors (master
    copies, adapters) then meet bf16 activations; none for an fp32 model on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if any(p.dtype == torch.bfloat16 for p in model.parameters()):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def optimize(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    examples: Sequence[Example],
    args: TrainArgs,
    *,
    lr: float,
    pad_id: int,
    penalty: Penalty | None = None,
    observer: StepObserver | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> tuple[list[float], int, list[float]]:
    """Run the optimisation; returns (loss per step, tokens seen, seconds per step)."""
    device = args.resolved_device()
    total = total_steps(args, len(examples))
    optimizer = torch.optim.AdamW(
        list(params.values()), lr=lr, betas=args.betas, weight_decay=args.weight_decay, foreach=False
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, args.warmup_steps, args.schedule)
    )
    batches = _batches(examples, args, pad_id)
    losses: list[float] = []
    step_seconds: list[float] = []
    tokens_seen = 0
    started = time.perf_counter()
    model.train()
    for step in range(total):
        t0 = time.perf_counter()
        group = [next(batches) for _ in range(args.grad_accum)]
        n_targets = sum(int((b["labels"][:, 1:] != -100).sum()) for b in group)
        ce_value = 0.0
        for batch in (piece for whole in group for piece in micro_batches(whole, args.max_tokens_per_batch)):
            batch = {k: v.to(device) for k, v in batch.items()}
            with _autocast(device, model):
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            ce = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                batch["labels"][:, 1:].reshape(-1),
                ignore_index=-100,
                reduction="sum",
            ) / max(1, n_targets)
            ce.backward()
            ce_value += float(ce.detach())
            tokens_seen += int(batch["attention_mask"].sum())
        extra = penalty(ce_value) if penalty is not None else None
        if extra is not None:
            extra.backward()
        if args.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(list(params.values()), args.max_grad_norm, foreach=False)
        if observer is not None:
            observer.before_step(params)
        optimizer.step()
        if observer is not None:
            observer.after_step(params)
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        step_seconds.append(time.perf_counter() - t0)
        losses.append(ce_value)
        if on_progress is not None:
            elapsed = time.perf_counter() - started
            on_progress(
                Progress(
                    step=step + 1,
                    total_steps=total,
                    loss=ce_value,
                    lr=optimizer.param_groups[0]["lr"],
                    tokens_per_s=tokens_seen / elapsed if elapsed > 0 else 0.0,
                    eta_s=elapsed / (step + 1) * (total - step - 1),
                    elapsed_s=elapsed,
                    penalty=float(extra.detach()) if extra is not None else None,
                )
            )
    model.eval()
    return losses, tokens_seen, step_seconds


def train(
    model: nn.Module,
    tokenizer: Any,
    rows: Sequence[Row | dict[str, Any]],
    method: Method,
    config: MethodConfig,
    args: TrainArgs,
    on_progress: Callable[[Progress], None] | None = None,
    *,
    regularization: Regularization | None = None,
) -> TrainResult:
    """Train `method` on `rows` and return its patch. The model comes back as the base it was.

    With a `regularization`, its penalty joins CE every step, and the patch's `method_config` holds
    the regulariser's stored settings beside the method's (the form in `core.method_config`)."""
    if regularization is not None:
        regularization.check_method(method)
    examples = encode_rows(tokenizer, as_rows(rows), args.max_length)
    device = args.resolved_device()
    model.to(device)
    torch.manual_seed(args.seed)
    checkpointing = _checkpointing(model, args)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    prepared = method.prepare(model, config)
    try:
        penalty = regularization.penalty(method, prepared, device) if regularization is not None else None
        started = time.perf_counter()
        losses, tokens, step_seconds = optimize(
            prepared.model,
            prepared.params,
            examples,
            args,
            lr=args.lr if args.lr is not None else method.default_lr,
            pad_id=pad_token_id(tokenizer),
            penalty=penalty,
            on_progress=on_progress,
        )
        seconds = time.perf_counter() - started
        patch = method.extract_patch(prepared, config)
    finally:
        method.cleanup(prepared)
        if checkpointing:
            disable: Any = model.activation_checkpointing_disable
            disable()
    if regularization is not None:
        patch.method_config = stored_config(patch.method_config, regularization.name, regularization.stored())
    patch.metadata.update({"steps": str(len(losses)), "seed": str(args.seed)})
    return TrainResult(
        patch=patch,
        losses=losses,
        steps=len(losses),
        tokens=tokens,
        seconds=seconds,
        trainable_params=sum(p.numel() for p in prepared.params.values()),
        step_seconds=step_seconds,
        peak_gpu_bytes=torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        gradient_checkpointing=checkpointing,
    )


def _checkpointing(model: nn.Module, args: TrainArgs) -> bool:
    """Turn gradient checkpointing on when asked (or, unasked, for large models); say if it is."""
    wanted = args.gradient_checkpointing
    if wanted is None:
        wanted = sum(p.numel() for p in model.parameters()) >= CHECKPOINTING_MIN_PARAMS
    enable = getattr(model, "activation_checkpointing_enable", None)  # transformers 5's name
    if not wanted or enable is None or not getattr(model, "supports_gradient_checkpointing", False):
        if args.gradient_checkpointing:
            raise ConfigError(f"{type(model).__name__} does not support gradient checkpointing")
        return False
    enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return True


def train_to_patch(
    model_dir: Path | str,
    data_path: Path | str,
    method: Method | str,
    config: MethodConfig | None = None,
    out_path: Path | str = "patch.safetensors",
    *,
    args: TrainArgs | None = None,
    regularization: Regularization | None = None,
    general_path: Path | str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    models: ResidentModels | None = None,
) -> tuple[Path, TrainResult]:
    """Train from files to a patch file (what `patchreg train-local` and the worker run).

    With `models` (a worker's resident bases) the base is borrowed in the training dtype and comes
    back as it was (every method's cleanup restores it bit for bit); without, it is loaded here.

    `config` defaults to the method's defaults. A `regularization` is first made ready for the run
    (ALEWR reuses its importance file if it exists, else measures it on `general_path` and writes it
    where the config says, default beside the patch), after it has accepted the method."""
    from core.rows import read_rows
    from trainer.hf import load_causal_lm, load_tokenizer
    from trainer.methods import get_method
    from trainer.patch.io import save_patch

    args = args or TrainArgs()
    chosen = get_method(method) if isinstance(method, str) else method
    config = config if config is not None else chosen.config_cls()
    if not isinstance(config, chosen.config_cls):  # typed settings only: `--set` is parsed at the edges
        raise TypeError(f"method {chosen.name!r} takes a {chosen.config_cls.__name__}, not {config!r}")
    out_path = Path(out_path)
    rows = read_rows(data_path)
    if regularization is not None:
        regularization.check_method(chosen)  # refuse before any costly preparation
        from trainer.regularizers.base import RunInputs

        regularization = regularization.prepare(
            RunInputs(
                model_dir=Path(model_dir),
                out_path=out_path,
                general_path=Path(general_path) if general_path is not None else None,
                seed=args.seed,
                device=args.device,
            )
        )
    dtype = training_dtype(args.resolved_device())
    with contextlib.ExitStack() as stack:
        if models is not None:
            model, tokenizer = stack.enter_context(models.borrow(model_dir, dtype, alone=True))
        else:
            model, tokenizer = load_causal_lm(model_dir, dtype=dtype), load_tokenizer(model_dir)
        was_training = model.training
        try:
            result = train(
                model,
                tokenizer,
                rows,
                chosen,
                config,
                args,
                on_progress=on_progress,
                regularization=regularization,
            )
        finally:
            model.train(was_training)
    result.patch.metadata["data_sha256"] = _sha256(Path(data_path))
    save_patch(result.patch, out_path)
    return out_path, result


def training_dtype(device: torch.device) -> torch.dtype:
    """bf16 weights on a CUDA device that has it (the trainable tensors stay fp32: LoRA adapters,
    S²FT deltas, Propulsion scales, `full`'s master copies), fp32 on CPU."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
