"""`patchreg demo`: what patchreg does today, from nothing, in the configured home."""

from __future__ import annotations

import click

from cli.context import AppContext, pass_app
from registry.errors import NotFound


def _step(text: str) -> None:
    click.echo(click.style(f"==> {text}", fg="cyan", bold=True))


@click.command()
@pass_app
def demo(app: AppContext) -> None:
    """Build a tiny model locally, register it as tiny:v1, and show it."""
    from registry import migrate
    from registry.services import bases

    home = app.settings.home
    click.echo(f"patchreg demo in {home} (database {app.settings.resolved_database_url})")

    _step("patchreg db upgrade")
    migrate.upgrade(app.engine)

    model_dir = home / "models" / "tiny-v1"
    if not (model_dir / "config.json").exists():
        _step(f"building a tiny Llama (2 layers, GQA, BPE tokenizer trained on pydoc topics) in {model_dir}")
        from trainer.tiny import save_tiny_model

        save_tiny_model(model_dir)

    with app.transaction() as session:
        try:
            bases.show_base(session, "tiny:v1")
            _step("tiny:v1 is already registered")
        except NotFound:
            _step(f"patchreg base register tiny:v1 {model_dir}")
            bases.register_base(session, "tiny:v1", str(model_dir))

    from cli import audit, base

    ctx = click.get_current_context()
    _step("patchreg base list")
    ctx.invoke(base.list_, family=None)
    _step("patchreg base show tiny:v1")
    ctx.invoke(base.show, ref="tiny:v1", tensors=False)
    _step("patchreg audit --limit 5")
    ctx.invoke(audit.audit, limit=5, subject=None)
