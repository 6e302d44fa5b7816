"""The one place an error becomes what a terminal user sees: one line on stderr and an exit code.

Exit codes: 0 success, 1 a user-facing error (any `core.errors.PatchregError`, whatever its code,
and a server's error with no local class: `api_error`), 2 a usage error (click's own) or a command
that does not run against a server, 3 the server could not be reached (`server_unreachable`:
worth retrying). Scripts read the stable code from `--json` output or the message.
"""

from __future__ import annotations

from typing import Any

import click

from core.errors import PatchregError

EXIT_USER_ERROR = 1
EXIT_USAGE = 2  # click.UsageError's own exit code; also a command that cannot run remotely
EXIT_UNREACHABLE = 3
LOCAL_ONLY = ("serve", "worker", "db", "gc", "demo")  # they run where the registry is, by design
ML_MODULES = ("torch", "transformers", "peft", "tokenizers", "safetensors.torch")  # `patchreg[ml]`


class UserError(click.ClickException):
    """A PatchregError as click shows it: `error: <message>` and EXIT_USER_ERROR, whatever the code
    (scripts read the stable code from `--json` output or the message)."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class NotRemote(UserError):
    exit_code = EXIT_USAGE


class Unreachable(UserError):
    exit_code = EXIT_UNREACHABLE


def to_user_error(error: PatchregError) -> UserError:
    if error.code == "server_unreachable":
        return Unreachable(error.code, error.message)
    if error.code == "api_error":
        status, code = error.detail.get("status"), error.detail.get("code", "no patchreg error")
        return UserError(error.code, f"the server answered HTTP {status} ({code}): {error.message}")
    return UserError(error.code, error.message)


def missing_extra(exc: ModuleNotFoundError, command: str) -> UserError | None:
    """A command that needs the `ml` extra on an installation without it (the client and the CLI
    against a server install without torch): one line that says what to install."""
    name = exc.name or ""
    if not any(name == m or name.startswith(f"{m}.") for m in ML_MODULES):
        return None
    return UserError(
        "unsupported",
        f"`patchreg {command}` needs {name.split('.')[0]}, which this installation lacks: "
        "pip install 'patchreg[ml]' (or run it against a server that has it)",
    )


def not_remote(url: str, command: str | None = None) -> NotRemote:
    """`patchreg X` asked of a server that only runs, or so far only runs, on the registry's machine."""
    if command is None:
        ctx = click.get_current_context(silent=True)
        command = " ".join(ctx.command_path.split()[1:]) if ctx is not None else ""
    path = f"patchreg {command}".strip()
    local_only = command.split(" ")[0] in LOCAL_ONLY
    why = "runs only where the registry is, not" if local_only else "cannot run yet"
    return NotRemote(
        "unsupported",
        f"`{path}` {why} against a server ({url}); run it with --home/--db on the registry's machine",
    )
