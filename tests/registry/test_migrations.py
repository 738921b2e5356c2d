from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import registry  # noqa: F401  (every table on SQLModel.metadata)
from registry.db import get_engine


def test_the_migrations_build_exactly_the_schema_the_models_describe(any_db: str) -> None:
    """A column added to a model without a migration (or the other way round) fails here, not in production."""
    with get_engine(any_db).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        drift = compare_metadata(context, SQLModel.metadata)
    assert drift == [], drift
