"""`patchreg patch`: patch files (inspect) and, with the registry, patches (list, show, import)."""

from __future__ import annotations

import click

from cli.patchfile import inspect_command


@click.group()
def patch() -> None:
    """Inspect patch files and registered patches."""


patch.add_command(inspect_command)
