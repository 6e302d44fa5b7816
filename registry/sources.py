"""Where a base model's files come from: a local directory or `hf://org/name@revision`.

Hub sources go through huggingface-hub's `snapshot_download`, which honours HF_HUB_OFFLINE and
the local cache; the resolved commit is what gets recorded, never a moving branch name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import InvalidInput, SourceUnavailable

HF_PREFIX = "hf://"
HF_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer*"]


@dataclass(frozen=True)
class ResolvedSource:
    path: Path  # a local directory with the model's files
    uri: str  # what to record: an absolute path, or hf://org/name@<commit>
    revision: str | None  # the resolved commit for hub sources


def resolve_source(source: str, *, local_only: bool = False) -> ResolvedSource:
    """Where `source`'s files are on this machine. `local_only`: never download, only use what the
    Hugging Face cache already holds (a server answering a request must not pull a whole model)."""
    if source.startswith(HF_PREFIX):
        return _resolve_hf(source[len(HF_PREFIX) :], local_only)
    path = Path(source).expanduser().resolve()
    if not path.exists():
        # Retryable, not bad input: a worker on another machine may have the path mounted.
        raise SourceUnavailable(f"{source}: no such directory on this machine")
    return ResolvedSource(path=path, uri=str(path), revision=None)


def peft_base_name(source_uri: str) -> str:
    """What PEFT's `base_model_name_or_path` should say: the hub repo id, else the local path."""
    if source_uri.startswith(HF_PREFIX):
        return source_uri[len(HF_PREFIX) :].partition("@")[0]
    return source_uri


def _resolve_hf(spec: str, local_only: bool = False) -> ResolvedSource:
    repo_id, _, revision = spec.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise InvalidInput(f"invalid hub source hf://{spec}: expected hf://ORG/NAME[@REVISION]")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = Path(
            snapshot_download(
                repo_id=repo_id,
                revision=revision or None,
                allow_patterns=HF_PATTERNS,
                local_files_only=local_only,
            )
        )
    except LocalEntryNotFoundError:
        if local_only:
            raise SourceUnavailable(f"hf://{spec} is not in this machine's Hugging Face cache") from None
        raise SourceUnavailable(
            f"hf://{spec} is not in the local Hugging Face cache and the hub cannot be reached "
            "(HF_HUB_OFFLINE or no network)"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise SourceUnavailable(f"cannot download hf://{spec}: {str(exc).splitlines()[0]}") from None
    commit = path.name  # snapshot_download returns <cache>/snapshots/<commit sha>
    return ResolvedSource(path=path, uri=f"{HF_PREFIX}{repo_id}@{commit}", revision=commit)
