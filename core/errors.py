"""The one error family: every user-facing failure has a stable `code` and says whether another
attempt could succeed (`retryable`).

Entry points map the code once each: `registry/api/errors.py` to an HTTP status, `cli/errors.py`
to an exit code and a one-line message, the worker to "retry later" or "fail now". Nothing else
catches these.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PatchregError(Exception):
    """Base of every user-facing error; `code` is stable and machine-readable."""

    code: ClassVar[str] = "error"
    retryable: ClassVar[bool] = False  # True: the same request may succeed later, unchanged

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            **({"detail": self.detail} if self.detail else {}),
        }


class InvalidInput(PatchregError):
    code = "invalid_input"


class MalformedFile(InvalidInput):
    """A file that lies about itself: not a patch, a bad safetensors header, NaN values, bad rows."""

    code = "malformed_file"


class ConfigError(InvalidInput):
    """A bad method or training setting; the message names the field and the allowed values."""


class DataError(InvalidInput):
    """A dataset that cannot be used for this job (bad rows, nothing to train on)."""


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class NotFound(PatchregError):
    code = "not_found"


class AlreadyExists(PatchregError):
    code = "already_exists"


class Ambiguous(PatchregError):
    code = "ambiguous"


class InvalidState(PatchregError):
    code = "invalid_state"


class IncompatibleModel(PatchregError):
    """A patch whose modules or shapes do not exist in the model it is applied to."""

    code = "incompatible"


class DataUnavailable(PatchregError):
    """The data exists but may no longer be read (past its `available_until`)."""

    code = "data_unavailable"


class CorruptArtifact(PatchregError):
    """A stored blob no longer matches its digest; it is never served."""

    code = "corrupt_artifact"
    retryable = True  # another worker's view of a shared store may still be intact


class SchemaOutOfDate(PatchregError):
    code = "schema_out_of_date"
    retryable = True  # an operator runs `db upgrade`, then the same call works


class SourceUnavailable(PatchregError):
    """A model source (local path, hf:// or s3:// reference) could not be resolved on this machine."""

    code = "source_unavailable"
    retryable = True  # another worker may have the path mounted or the hub reachable


class StoreUnavailable(PatchregError):
    """The artifact store (an object-store endpoint) could not be reached or refused the request."""

    code = "store_unavailable"
    retryable = True


class DatabaseUnavailable(PatchregError):
    code = "database_unavailable"
    retryable = True


class Unauthorized(PatchregError):
    code = "unauthorized"


class Forbidden(PatchregError):
    code = "forbidden"


class Unsupported(PatchregError):
    """The request is valid but this installation cannot carry it out (e.g. no torch to convert)."""

    code = "unsupported"


class RangeNotSatisfiable(PatchregError):
    code = "range_not_satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(f"the requested range is outside the artifact's {size} bytes", size=size)
        self.headers = {"Content-Range": f"bytes */{size}"}
