"""Real parts for every test: a Prefect server per session; per test a registry, an SMTP server, a gateway."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# Prefect reads these only when first imported.
_PREFECT_HOME = tempfile.mkdtemp(prefix="ops-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ.pop("PREFECT_API_URL", None)

import httpx  # noqa: E402
import pytest  # noqa: E402

from engine import inbox, mailcatcher  # noqa: E402
from engine.settings import get_settings  # noqa: E402
from registry import reset_engines  # noqa: E402
from registry.migrate import upgrade  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get("OPS_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgresql"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _refresh_settings() -> None:
    get_settings.cache_clear()
    reset_engines()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One real Prefect server (SQLite) for the whole session; tests tell runs apart by unique names."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield str(PREFECT_API_URL.value())


def _postgres_database() -> Iterator[str]:
    if not POSTGRES_ADMIN_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must provide OPS_TEST_POSTGRES_URL (see .ci/run)")
        pytest.skip("no PostgreSQL: set OPS_TEST_POSTGRES_URL (e.g. from .ci/start-postgres)")
    import psycopg

    name = f"ops_{uuid.uuid4().hex[:12]}"
    admin = POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    reset_engines()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _use_registry(url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPS_DATABASE_URL", url)
    monkeypatch.setenv("OPS_DATA_DIR", str(data_dir))
    _refresh_settings()
    upgrade(url)
    return url


@pytest.fixture
def registry_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, migrated SQLite registry of this test's own."""
    data = tmp_path / "data"
    data.mkdir()
    yield _use_registry(f"sqlite:///{data / 'registry.db'}", data, monkeypatch)
    _refresh_settings()


@pytest.fixture(params=BACKENDS)
def any_db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The same test on a fresh SQLite file and on a fresh PostgreSQL database."""
    data = tmp_path / "data"
    data.mkdir()
    if request.param == "sqlite":
        yield _use_registry(f"sqlite:///{data / 'registry.db'}", data, monkeypatch)
    else:
        for url in _postgres_database():
            yield _use_registry(url, data, monkeypatch)
    _refresh_settings()


@dataclass
class Mailbox:
    port: int
    url: str

    def messages(self, to: str | None = None) -> list[inbox.CaughtMail]:
        return inbox.messages(to)

    def wait_for(self, count: int, seconds: float = 20, to: str | None = None) -> list[inbox.CaughtMail]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = self.messages(to)
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"expected {count} message(s), got {len(self.messages(to))}")


@pytest.fixture
def smtp(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mailbox]:
    """A real SMTP server on loopback, catching into this test's mailbox; the default mail channel points at it.

    It sits on the test's `any_db` registry when the test asks for one (so `gateway` does too), else on
    `registry_db`.
    """
    request.getfixturevalue("any_db" if "any_db" in request.fixturenames else "registry_db")
    port = free_port()
    controller = mailcatcher.start(get_settings().mailbox_dir, "127.0.0.1", port)
    url = f"mailto://127.0.0.1:{port}?from=ops%40test.example&mode=insecure"
    monkeypatch.setenv("OPS_MAIL_URL", url)
    get_settings.cache_clear()
    yield Mailbox(port=port, url=url)
    controller.stop()


@dataclass
class Gateway:
    url: str
    client: httpx.Client


@pytest.fixture
def gateway(smtp: Mailbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    """The link gateway served over real HTTP on loopback; links sent during the test point at it."""
    import uvicorn

    from engine.gateway import create_app

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("OPS_GATEWAY_URL", url)
    get_settings.cache_clear()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    with httpx.Client(timeout=10) as client:
        yield Gateway(url=url, client=client)
    server.should_exit = True
    thread.join(timeout=5)


@dataclass
class Listener:
    url: str
    received: list[tuple[str, bytes]]


@pytest.fixture
def http_listener() -> Iterator[Listener]:
    """A real HTTP server on loopback that records every POST (a webhook peer)."""
    received: list[tuple[str, bytes]] = []

    class _Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append((self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Listener(url=f"127.0.0.1:{server.server_address[1]}", received=received)
    server.shutdown()
