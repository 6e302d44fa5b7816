"""`patchreg`: the root group, global options, and the one place errors become messages.

A user error (any `core.errors.PatchregError`) is one line on stderr and exit code 1, never a
traceback; a usage error exits 2 (click's own). The mapping itself lives in `cli.errors`.
`--server`/`--token` (or $PATCHREG_URL, or `patchreg login`) point data commands at a server;
`cli.remote` says which wins.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import click

from cli.errors import LOCAL_ONLY, missing_extra, not_remote, to_user_error
from core.errors import PatchregError

# name -> "module:object". A command's module is imported only when that command runs (or when
# `--help` lists them all), so `patchreg --version` or `patchreg lineage ID` pays for nothing else.
COMMANDS = {
    "alias": "cli.alias:alias",
    "architectures": "cli.architectures:architectures",
    "audit": "cli.audit:audit",
    "base": "cli.base:base",
    "compat": "cli.compat:compat",
    "dataset": "cli.dataset:dataset",
    "db": "cli.db:db",
    "demo": "cli.demo:demo",
    "domain": "cli.domain:domain",
    "eval": "cli.train_local:eval_command",
    "export": "cli.patchfile:export_command",
    "fetch": "cli.fetch:fetch",
    "gc": "cli.gc:gc",
    "jobs": "cli.jobs:jobs",
    "lineage": "cli.lineage:lineage",
    "login": "cli.login:login",
    "logout": "cli.login:logout",
    "patch": "cli.patch:patch",
    "port": "cli.port:port",
    "resolve": "cli.fetch:resolve",
    "serve": "cli.serve:serve",
    "token": "cli.token:token",
    "train": "cli.train:train",
    "train-local": "cli.train_local:train_local_command",
    "worker": "cli.worker:worker",
}


class PatchregGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:  # added directly (tests)
            return self.commands[cmd_name]
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, name = target.partition(":")
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command)
        return command

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
    from cli.context import AppContext
    from cli.credentials import choose
    from registry.config import Settings

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


def main() -> None:
    cli.main(prog_name="patchreg")


if __name__ == "__main__":
    main()
