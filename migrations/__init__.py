"""Alembic migrations: one linear chain. Run them with `patchreg db upgrade`."""
