"""Errors of the ML side. They carry the same kind of stable `code` as `registry.errors`, so the
CLI and the API map both families through one table without `trainer` importing `registry`."""

from __future__ import annotations


class TrainerError(Exception):
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PatchFormatError(TrainerError):
    """A patch file that is malformed: unknown kind, bad indices, NaN/Inf, wrong metadata."""

    code = "malformed_file"


class ConfigError(TrainerError):
    """A bad method or training setting; the message names the field and the allowed values."""

    code = "invalid_input"


class DataError(TrainerError):
    """A dataset that cannot be used for this job (bad rows, nothing to train on)."""

    code = "invalid_input"


class IncompatibleModel(TrainerError):
    """A patch whose modules or shapes do not exist in the model it is applied to."""

    code = "incompatible"
