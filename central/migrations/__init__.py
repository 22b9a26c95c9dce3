"""Alembic migrations, run by ``central.core.db_migrate.upgrade`` (startup and ``db upgrade``)."""
