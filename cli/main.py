"""`patchreg`: the root group, global options, and the one place errors become messages.

A user error (any `core.errors.PatchregError`) is one line on stderr and exit code 1, never a
traceback; a usage error exits 2 (click's own). The mapping itself lives in `cli.errors`.
`--server`/`--token` (or $PATCHREG_URL, or `patchreg login`) point data commands at a server;
`cli.remote` says which wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.context import AppContext
from cli.errors import LOCAL_ONLY, missing_extra, not_remote, to_user_error
from cli.remote import choose
from core.errors import PatchregError
from registry.config import Settings


class PatchregGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PatchregError as exc:
            raise to_user_error(exc) from None
        except ModuleNotFoundError as exc:
            missing = missing_extra(exc, ctx.invoked_subcommand or "")
            if missing is None:
                raise
            raise missing from None


@click.group(cls=PatchregGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Registry home (default $PATCHREG_HOME or ~/.patchreg): SQLite database and artifacts.",
)
@click.option(
    "--db", "db_url", metavar="URL", help="Database URL (default $PATCHREG_DATABASE_URL or SQLite in home)."
)
@click.option(
    "--server",
    metavar="URL",
    help="A patchreg server to run data commands against (default $PATCHREG_URL, else `patchreg login`'s).",
)
@click.option("--token", metavar="T", help="API token for --server (default $PATCHREG_TOKEN, else login's).")
@click.option("--json", "json_output", is_flag=True, help="Print JSON for scripts.")
@click.version_option(package_name="patchreg")
@click.pass_context
def cli(
    ctx: click.Context,
    home: Path | None,
    db_url: str | None,
    server: str | None,
    token: str | None,
    json_output: bool,
) -> None:
    """patchreg: a registry for fine-tuned LLM patches that survive base-model releases.

    Track base model versions and domain patches with their lineage, port patches onto new base
    versions without training, check compatibility, and fetch patches for PEFT, vLLM and LoRAX.
    """
    overrides: dict[str, Any] = {}
    global_args: list[str] = []
    if home is not None:
        overrides["home"] = home.expanduser().resolve()
        global_args += ["--home", str(overrides["home"])]
    if db_url is not None:
        overrides["database_url"] = db_url
        global_args += ["--db", db_url]
    remote = None
    if ctx.invoked_subcommand not in ("login", "logout"):
        remote = choose(server, token, local_flags=bool(global_args))
    if remote is not None and ctx.invoked_subcommand in LOCAL_ONLY:
        raise not_remote(remote.url, ctx.invoked_subcommand)
    ctx.obj = AppContext(
        settings=Settings(**overrides), json_output=json_output, global_args=global_args, remote=remote
    )


def _register() -> None:
    from cli import (
        alias,
        architectures,
        audit,
        base,
        compat,
        dataset,
        db,
        demo,
        domain,
        fetch,
        gc,
        jobs,
        lineage,
        login,
        patch,
        patchfile,
        port,
        serve,
        token,
        train,
        train_local,
        worker,
    )

    for command in (
        db.db,
        base.base,
        architectures.architectures,
        domain.domain,
        dataset.dataset,
        patch.patch,
        compat.compat,
        port.port,
        fetch.fetch,
        fetch.resolve,
        lineage.lineage,
        alias.alias,
        train.train,
        jobs.jobs,
        worker.worker,
        train_local.train_local_command,
        train_local.eval_command,
        patchfile.export_command,
        audit.audit,
        gc.gc,
        demo.demo,
        token.token,
        serve.serve,
        login.login,
        login.logout,
    ):
        cli.add_command(command)


_register()


def main() -> None:
    cli.main(prog_name="patchreg")


if __name__ == "__main__":
    main()
