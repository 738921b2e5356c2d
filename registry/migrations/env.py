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
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration recreates a table: dropping the old copy must not delete (or refuse for) the rows
            # that refer to it. SQLite takes this pragma only outside a transaction, and checks nothing until on.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
        )
        try:
            with context.begin_transaction():
                context.run_migrations()
                if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                    raise RuntimeError(f"the migration left rows referring to nothing: {broken[:5]}")
            connection.commit()
        finally:
            if sqlite:
                connection.rollback()
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")


run_migrations()
