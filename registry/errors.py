"""One error family for the whole product, each with a stable code.

Entry points map the code once: to an HTTP status in the API, to an exit code and a one-line
message in the CLI. Nothing else catches these.
"""

from __future__ import annotations

from typing import Any


class PatchregError(Exception):
    """Base of every user-facing error; `code` is stable and machine-readable."""

    code = "error"
    http_status = 400

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
    http_status = 422


class NotFound(PatchregError):
    code = "not_found"
    http_status = 404


class AlreadyExists(PatchregError):
    code = "already_exists"
    http_status = 409


class Ambiguous(PatchregError):
    code = "ambiguous"
    http_status = 409


class InvalidState(PatchregError):
    code = "invalid_state"
    http_status = 409


class DataUnavailable(PatchregError):
    """The data exists but may no longer be read (past its `available_until`)."""

    code = "data_unavailable"
    http_status = 410


class MalformedFile(InvalidInput):
    code = "malformed_file"


class CorruptArtifact(PatchregError):
    """A stored blob no longer matches its digest; it is never served."""

    code = "corrupt_artifact"
    http_status = 500


class SchemaOutOfDate(PatchregError):
    code = "schema_out_of_date"
    http_status = 503


class SourceUnavailable(PatchregError):
    """A model source (local path or hf:// reference) could not be resolved."""

    code = "source_unavailable"
    http_status = 424


class Unauthorized(PatchregError):
    code = "unauthorized"
    http_status = 401


class Forbidden(PatchregError):
    code = "forbidden"
    http_status = 403


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"
    http_status = 413
