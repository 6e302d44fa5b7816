"""The one place an error becomes what a terminal user sees: one line on stderr and an exit code.

Exit codes: 0 success, 1 a user-facing error (any `core.errors.PatchregError`, whatever its code),
2 a usage error (click's own). Scripts read the stable code from `--json` output or the message.
"""

from __future__ import annotations

from typing import Any

import click

from core.errors import PatchregError

EXIT_USER_ERROR = 1
EXIT_USAGE = 2  # click.UsageError's own exit code


class UserError(click.ClickException):
    """A PatchregError as click shows it: `error: <message>` and EXIT_USER_ERROR, whatever the code
    (scripts read the stable code from `--json` output or the message)."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def to_user_error(error: PatchregError) -> UserError:
    return UserError(error.code, error.message)
