"""Alembic environment: the URL and connection come from patchreg (see registry/migrate.py)."""

from __future__ import annotations

from alembic import context

from registry import models  # noqa: F401  (registers every table on Base.metadata)
from registry.db import Base, UTCDateTime, make_engine

config = context.config
target_metadata = Base.metadata


def _render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Migrations use plain `sa` types only, never patchreg's own: UTCDateTime is a DateTime."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection_or_url: object) -> None:
    kwargs = dict(
        target_metadata=target_metadata, compare_type=True, render_as_batch=True, render_item=_render_item
    )
    if isinstance(connection_or_url, str):
        context.configure(url=connection_or_url, literal_binds=True, **kwargs)
    else:
        context.configure(connection=connection_or_url, **kwargs)


def run() -> None:
    connection = config.attributes.get("connection")
    if context.is_offline_mode():
        _configure(config.get_main_option("sqlalchemy.url"))
        with context.begin_transaction():
            context.run_migrations()
    elif connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    else:
        engine = make_engine(config.get_main_option("sqlalchemy.url"))
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
        engine.dispose()


run()
