from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import registry  # noqa: F401  (registers every table on SQLModel.metadata)
from registry.db import get_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations() -> None:
    engine = get_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
