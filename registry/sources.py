"""Where a base model's files come from: a local directory, `hf://org/name@revision`, or
`s3://bucket/path@revision` (`registry.s3_source`).

Hub sources go through huggingface-hub's `snapshot_download`, which honours HF_HUB_OFFLINE and
the local cache; object-store sources through this machine's base cache (`Settings.base_cache`).
Either way the resolved revision is what gets recorded, never a moving branch name or folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import InvalidInput, SourceUnavailable

HF_PREFIX = "hf://"
S3_PREFIX = "s3://"
HF_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer*"]


@dataclass(frozen=True)
class ResolvedSource:
    path: Path  # a local directory with the model's files
    uri: str  # what to record: an absolute path, hf://org/name@<commit>, s3://bucket/path@<revision>
    revision: str | None  # the resolved commit (hub) or listing revision (object store)


def resolve_source(
    source: str,
    *,
    local_only: bool = False,
    weights_digest: str | None = None,
    cache_root: Path | None = None,
) -> ResolvedSource:
    """Where `source`'s files are on this machine. `local_only`: never download, only use what a
    cache already holds (a server answering a request must not pull a whole model).
    `weights_digest`: the registered base's, which an object-store download must match before use;
    `cache_root`: where object-store sources are cached (default: `Settings().base_cache`)."""
    if source.startswith(HF_PREFIX):
        return _resolve_hf(source[len(HF_PREFIX) :], local_only)
    if source.startswith(S3_PREFIX):
        from registry.s3_source import resolve_s3

        if cache_root is None:
            from registry.config import Settings

            cache_root = Settings().base_cache
        path, uri, revision = resolve_s3(
            source[len(S3_PREFIX) :],
            patterns=HF_PATTERNS,
            cache_root=cache_root,
            local_only=local_only,
            weights_digest=weights_digest,
        )
        return ResolvedSource(path=path, uri=uri, revision=revision)
    path = Path(source).expanduser().resolve()
    if not path.exists():
        # Retryable, not bad input: a worker on another machine may have the path mounted.
        raise SourceUnavailable(f"{source}: no such directory on this machine")
    return ResolvedSource(path=path, uri=str(path), revision=None)


def peft_base_name(source_uri: str) -> str:
    """What PEFT's `base_model_name_or_path` should say: the hub repo id, else where it lives."""
    if source_uri.startswith((HF_PREFIX, S3_PREFIX)):
        return source_uri.removeprefix(HF_PREFIX).partition("@")[0]
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
