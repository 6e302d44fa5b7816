from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from core.errors import SchemaOutOfDate
from registry import migrate
from registry.db import Base, make_engine
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        url = create_pg_database()
        yield url
        drop_pg_database(url)


def test_empty_to_head_then_no_drift_then_round_trip(empty_url: str) -> None:
    engine = make_engine(empty_url)
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    migrate.check_drift(engine)  # `alembic check`: the models match the migrations

    migrate.downgrade(engine, "base")
    assert migrate.current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    migrate.check_drift(engine)
    engine.dispose()


def test_guard_refuses_an_uninitialised_or_old_schema(empty_url: str) -> None:
    engine = make_engine(empty_url)
    with pytest.raises(SchemaOutOfDate, match="run `patchreg db upgrade`"):
        migrate.ensure_current(engine)
    migrate.upgrade(engine)
    migrate.ensure_current(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0000'")
    with pytest.raises(SchemaOutOfDate, match=r"at revision 0000 .* run `patchreg --db X db upgrade`"):
        migrate.ensure_current(engine, fix_command="patchreg --db X db upgrade")
    engine.dispose()


def test_migrations_form_one_linear_chain() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(migrate.MIGRATIONS_DIR))
    assert len(script.get_heads()) == 1
    assert all(len(rev._all_down_revisions) <= 1 for rev in script.walk_revisions())
    assert script.get_heads() == [migrate.HEAD]  # the guard's constant is alembic's head
    assert migrate.head_revision() == migrate.HEAD


def test_0003_keeps_base_versions_registered_before_it(empty_url: str) -> None:
    """A row from before configs were recorded survives the upgrade with a null config, and its
    architecture still comes from its model_type."""
    from sqlalchemy import text

    from registry.db import session_factory, transaction
    from registry.services import bases

    engine = make_engine(empty_url)
    migrate.upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO base_families (name, architecture, created_at)"
                " VALUES ('old', 'PhiForCausalLM', :t)"
            ),
            {"t": "2026-01-01 00:00:00+00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO base_versions (family_id, version, source_uri, model_type, arch_fingerprint,"
                " config_digest, weights_digest, num_parameters, tensor_table, status, created_at)"
                " VALUES (1, 'v1', '/gone', 'phi', 'a', 'c', 'w', 0, '[]', 'ready', :t)"
            ),
            {"t": "2026-01-01 00:00:00+00:00"},
        )
    migrate.upgrade(engine)
    with transaction(session_factory(engine)) as s:
        shown = bases.show_base(s, "old:v1")
    assert shown.config is None and shown.architecture.name == "Phi-2"
    migrate.downgrade(engine, "0002")
    migrate.upgrade(engine)
    engine.dispose()


def test_0004_keys_the_first_of_each_imported_content_and_keeps_duplicates(
    empty_url: str, make_tiny_model, tmp_path: Path
) -> None:
    """Patches imported twice before 0004 both survive it: the older gets the import key (later
    imports of the same bytes find it), the newer keeps a null key."""
    from sqlalchemy import text

    from registry.db import session_factory, transaction
    from registry.services import bases, domains, patches
    from registry.store import open_store
    from tests.factories import write_patch

    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    store = open_store(tmp_path / "store")
    with transaction(session_factory(engine)) as s:
        bases.register_base(s, "tiny:v1", str(make_tiny_model()))
        domains.create_domain(s, "medical")
        first = patches.register_patch(
            s, store, "medical", "tiny:v1", write_patch(tmp_path / "p"), "imported"
        )
    copy = (
        "INSERT INTO patches (id, domain_id, base_version_id, method, method_config, artifact_digest,"
        " trainable_params, origin, parent_id, train_dataset_id, job_id, status, metrics, created_at)"
        " SELECT 'duplicate', domain_id, base_version_id, method, method_config, artifact_digest,"
        " trainable_params, origin, parent_id, train_dataset_id, job_id, status, metrics, created_at"
        " FROM patches WHERE id = :id"
    )
    migrate.downgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(text(copy), {"id": first.id})
        later = "UPDATE patches SET created_at = :t WHERE id = 'duplicate'"
        conn.execute(text(later), {"t": "2999-01-01 00:00:00+00:00"})
    migrate.upgrade(engine)
    with engine.begin() as conn:
        keys = dict(conn.execute(text("SELECT id, import_key FROM patches")).all())
    assert keys[first.id] is not None and keys["duplicate"] is None
    with transaction(session_factory(engine)) as s:
        again = patches.register_patch(s, store, "medical", "tiny:v1", tmp_path / "p", "imported")
    assert again.id == first.id
    engine.dispose()


def test_0006_gives_every_ported_copy_its_source(empty_url: str) -> None:
    """Patches from before 0006 get `source_id` filled in: a source its own id, every copy down a
    chain the id of the source at its top (what the services set on insert since)."""
    from sqlalchemy import text

    from bench.synthetic import Shape, generate
    from registry.db import session_factory, transaction

    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    with transaction(session_factory(engine)) as s:
        chains = generate(s, Shape(versions=4, domains=2, patches=30, depth=4))
    read = "SELECT id, source_id FROM patches"
    with engine.begin() as conn:
        expected = dict(conn.execute(text(read)).all())
    assert expected[chains["chain"][-1]] == chains["chain"][0] and len(set(expected.values())) > 5
    migrate.downgrade(engine, "0005")
    migrate.upgrade(engine)
    with engine.begin() as conn:
        assert dict(conn.execute(text(read)).all()) == expected
    engine.dispose()
