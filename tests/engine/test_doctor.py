"""`ops doctor` on real parts: a healthy configuration all OK, and each fault (a stopped mail server, an unreachable
gateway, a registry not migrated, a database not answering, a default secret in production, a pool with no worker
alive, a pool missing, several workers on local result storage) found with its fix, no password ever printed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from engine.doctor import Finding, Status, diagnose, examine, failed, render
from engine.doctor.context import Doctor
from engine.doctor.findings import fail
from engine.settings import Settings, get_settings
from tests.conftest import free_port

DB_PASSWORD = "db-pass-Zq81x"
MAIL_PASSWORD = "mail-pass-Wk27y"
_STRONG_KEY = "k" * 40


def _by_name(findings: list[Finding]) -> dict[str, Finding]:
    return {finding.name: finding for finding in findings}


def _no_secret(findings: list[Finding]) -> str:
    text = render(findings)
    assert DB_PASSWORD not in text and MAIL_PASSWORD not in text, text
    return text


@dataclass
class Parts:
    prefect_api: str
    registry_url: str
    gateway_url: str


@pytest.fixture(scope="module")
def parts(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parts]:
    """One healthy configuration for the module: a migrated SQLite registry, a mail server and the gateway on
    loopback, the session's Prefect server. Each test breaks one part through its own environment."""
    import uvicorn

    from engine import mailcatcher
    from engine.gateway import create_app
    from registry import reset_engines
    from registry.migrate import upgrade

    patch = pytest.MonkeyPatch()
    data = tmp_path_factory.mktemp("doctor") / "data"
    data.mkdir()
    registry_url = f"sqlite:///{data / 'registry.db'}"
    smtp_port, gateway_port = free_port(), free_port()
    for name in ("OPS_MODE", "OPS_SECRET_KEY", "OPS_TRAIL_KEY"):
        patch.delenv(name, raising=False)
    patch.setenv("OPS_DATABASE_URL", registry_url)
    patch.setenv("OPS_DATA_DIR", str(data))
    patch.setenv("OPS_MAIL_URL", f"mailto://127.0.0.1:{smtp_port}?from=ops%40test.example&mode=insecure")
    patch.setenv("OPS_GATEWAY_URL", f"http://127.0.0.1:{gateway_port}")
    get_settings.cache_clear()
    reset_engines()
    upgrade(registry_url)
    catcher = mailcatcher.start(data / "mailbox", "127.0.0.1", smtp_port)
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=gateway_port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.02)
    yield Parts(prefect_api, registry_url, f"http://127.0.0.1:{gateway_port}")
    server.should_exit = True
    thread.join(timeout=10)
    catcher.stop()
    patch.undo()
    get_settings.cache_clear()
    reset_engines()


@pytest.fixture
def healthy(parts: Parts) -> Iterator[str]:
    """The module's healthy configuration, settings read afresh for this test's changes; the Prefect API URL."""
    get_settings.cache_clear()
    yield parts.prefect_api
    get_settings.cache_clear()


def test_a_healthy_configuration_is_all_ok(healthy: str, any_db: str) -> None:
    findings = diagnose(topology="local")
    seen = _by_name(findings)
    assert not failed(findings), render(findings)
    assert {f.status for f in findings} <= {Status.ok, Status.skipped}, render(findings)
    for name in ("registry database", "Prefect API", "Prefect version", "Prefect database", "gateway",
                 "mail server"):
        assert seen[name].status is Status.ok, render(findings)
    assert "the newest" in seen["registry database"].detail
    assert seen["work pool"].detail.startswith("skipped (one machine")


def test_ops_doctor_as_a_subprocess_exits_1_naming_each_fault_without_a_password(healthy: str,
                                                                                   tmp_path: Path) -> None:
    dead_port = free_port()
    env = {**os.environ, "PREFECT_API_URL": healthy,
           "OPS_DATABASE_URL": f"postgresql+psycopg://ops:{DB_PASSWORD}@127.0.0.1:{dead_port}/ops",
           "OPS_MAIL_URL": f"mailto://ops:{MAIL_PASSWORD}@127.0.0.1:{dead_port}?from=ops%40test.example"}
    pool = f"doctor-missing-{uuid.uuid4().hex[:8]}"
    run = subprocess.run([sys.executable, "-m", "engine.cli", "doctor", "--topology", "pool", "--pool", pool],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert any(line.startswith("FAIL  work pool") and pool in line for line in lines), run.stdout
    assert any(line.startswith("FAIL  registry database") and f"127.0.0.1:{dead_port}" in line for line in lines)
    assert any(line.startswith("FAIL  mail server") and f"127.0.0.1:{dead_port}" in line for line in lines)
    assert any(line.startswith("OK    gateway") for line in lines), run.stdout
    assert "fix: run `ops init --no-demo`" not in run.stdout  # unreachable, not unmigrated
    assert "ops:***@127.0.0.1" in run.stdout and "3 failed, 0 warning(s)" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert DB_PASSWORD not in run.stdout + run.stderr and MAIL_PASSWORD not in run.stdout + run.stderr


def test_a_stopped_mail_server_fails_naming_host_and_port(healthy: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("OPS_MAIL_URL", f"mailto://ops:{MAIL_PASSWORD}@127.0.0.1:{port}?from=ops%40test.example"
                                       "&mode=insecure")
    findings = diagnose(topology="local")
    mail = _by_name(findings)["mail server"]
    assert mail.status is Status.fail and f"127.0.0.1:{port}" in mail.detail
    assert "OPS_MAIL_URL" in mail.fix
    assert failed(findings)
    _no_secret(findings)


def test_an_unreachable_gateway_fails(healthy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("OPS_GATEWAY_URL", url)
    found = _by_name(diagnose(topology="local"))["gateway"]
    assert found.status is Status.fail and url in found.detail
    assert "OPS_GATEWAY_URL" in found.fix and "ops gateway" in found.fix


def test_something_else_answering_at_the_gateway_url_fails(healthy: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_GATEWAY_URL", healthy.removesuffix("/api"))  # the Prefect server: not our gateway
    found = _by_name(diagnose(topology="local"))["gateway"]
    assert found.status is Status.fail and "not the gateway" in found.detail


def test_a_registry_never_migrated_behind_misspelt_or_missing_fails_with_its_fix(tmp_path: Path, healthy: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from alembic import command

    from registry.migrate import alembic_config

    empty = tmp_path / "empty.db"
    empty.touch()
    monkeypatch.setenv("OPS_DATABASE_URL", f"sqlite:///{empty}")
    found = _by_name(diagnose(topology="local"))["registry database"]
    assert found.status is Status.fail and "never migrated" in found.detail
    assert "ops init" in found.fix
    assert empty.stat().st_size == 0  # the doctor wrote nothing into it

    behind = tmp_path / "behind.db"
    command.upgrade(alembic_config(f"sqlite:///{behind}"), "0014")
    monkeypatch.setenv("OPS_DATABASE_URL", f"sqlite:///{behind}")
    found = _by_name(diagnose(topology="local"))["registry database"]
    assert found.status is Status.fail and "at migration 0014, behind" in found.detail
    assert "ops init" in found.fix

    monkeypatch.setenv("OPS_DATABASE_URL", f"postgresql//ops:{DB_PASSWORD}@db/ops")  # the colon forgotten
    findings = diagnose(topology="local")
    assert _by_name(findings)["registry database"].status is Status.fail
    _no_secret(findings)

    missing = tmp_path / "nowhere" / "registry.db"
    monkeypatch.setenv("OPS_DATABASE_URL", f"sqlite:///{missing}")
    found = _by_name(diagnose(topology="local"))["registry database"]
    assert found.status is Status.fail and "no registry" in found.detail and not missing.parent.exists()


def test_an_unreachable_database_fails_without_its_password(healthy: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("OPS_DATABASE_URL", f"postgresql+psycopg://ops:{DB_PASSWORD}@127.0.0.1:{port}/ops")
    started = time.monotonic()
    findings = diagnose(topology="local")
    found = _by_name(findings)["registry database"]
    assert found.status is Status.fail and f"ops:***@127.0.0.1:{port}/ops" in found.detail
    assert "OPS_DATABASE_URL" in found.fix
    assert time.monotonic() - started < 60
    _no_secret(findings)


def test_production_with_a_default_secret_fails_with_settings_own_refusal(healthy: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_MODE", "production")
    findings = diagnose(topology="local")
    seen = _by_name(findings)
    refused = [f for f in findings if f.name == "production secrets"]
    assert [f.status for f in refused] == [Status.fail, Status.fail]  # each default secret, not the first only
    assert "OPS_SECRET_KEY must be set" in refused[0].detail and "OPS_TRAIL_KEY must be set" in refused[1].detail
    assert "token_hex" in refused[0].fix
    assert "production mail" not in seen  # OPS_MAIL_URL is set (the smtp fixture's)
    assert seen["gateway"].status is Status.warn  # plain HTTP in production
    # The session's Prefect server keeps its messaging and Docket in memory: fine for one API server, said so.
    ha = seen["high availability"]
    assert ha.status is Status.warn and "fine for one Prefect API server" in ha.detail
    assert "PREFECT_SERVER_DOCKET_URL=redis://" in ha.fix and "docs.prefect.io" in ha.fix
    assert failed(findings)

    monkeypatch.setenv("OPS_SECRET_KEY", _STRONG_KEY)
    monkeypatch.setenv("OPS_TRAIL_KEY", _STRONG_KEY)
    seen = _by_name(diagnose(topology="local"))
    assert seen["production secrets"].status is Status.ok
    # The test's gateway was started in development mode: it serves the caught-mail inbox, and is told to stop.
    assert seen["inbox off"].status is Status.fail and "OPS_MODE=production" in seen["inbox off"].fix
    assert _STRONG_KEY not in render(list(seen.values()))


def test_a_work_pool_missing_fails_saying_ops_deploy(healthy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = f"doctor-missing-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("OPS_PREFECT_DATABASE_URL", f"sqlite+aiosqlite:////tmp/{pool}.db")
    findings = diagnose(topology="pool", pool=pool)
    seen = _by_name(findings)
    assert seen["work pool"].status is Status.fail and pool in seen["work pool"].detail
    assert "ops deploy" in seen["work pool"].fix
    assert seen["workers"].status is Status.skipped
    # Workers on a Prefect server this machine's settings put on SQLite: warned, PostgreSQL named as the fix.
    assert seen["Prefect database"].status is Status.warn and "SQLite (OPS_PREFECT_DATABASE_URL)" in \
        seen["Prefect database"].detail
    assert "OPS_PREFECT_DATABASE_URL=postgresql+asyncpg://" in seen["Prefect database"].fix
    # ... and the registry's SQLite file, which workers on other machines cannot reach.
    assert seen["registry database"].status is Status.warn and "PostgreSQL" in seen["registry database"].fix
    assert failed(findings)


@pytest.fixture
def worker_pool(prefect_api: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real Prefect process worker on a pool of this test's own, heartbeating every second."""
    pool = f"doctor-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_WORKER_HEARTBEAT_SECONDS": "1",
           "PREFECT_HOME": str(tmp_path / "prefect-home")}
    process = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", pool,
                                "--type", "process", "--name", f"{pool}-w1"], env=env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    yield pool, process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _until(condition: str, pool: str, seconds: float = 120) -> list[Finding]:
    deadline = time.monotonic() + seconds
    while True:
        findings = diagnose(topology="pool", pool=pool)
        workers = _by_name(findings).get("workers")
        if workers is not None and workers.status.value == condition:
            return findings
        assert time.monotonic() < deadline, render(findings)
        time.sleep(0.5)


def test_workers_alive_then_a_killed_worker_fails_the_pool(healthy: str,
                                                           worker_pool: tuple[str, subprocess.Popen[bytes]]) -> None:
    pool, process = worker_pool
    findings = _until("OK", pool)
    seen = _by_name(findings)
    assert seen["work pool"].status is Status.ok
    assert f"{pool}-w1: last heartbeat" in seen["worker"].detail and "(every 1 s)" in seen["worker"].detail
    assert seen["result storage"].detail.startswith("skipped (1 worker alive")
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_FLOWS_HEARTBEAT_FREQUENCY}):  # Prefect's 180 s
        takeover = _by_name(diagnose(topology="pool", pool=pool))["run take-over"]
    assert takeover.status is Status.warn and "540 s" in takeover.detail
    assert "PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30" in takeover.fix
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        takeover = _by_name(diagnose(topology="pool", pool=pool))["run take-over"]
    assert takeover.status is Status.ok and "90 s" in takeover.detail

    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    findings = _until("FAIL", pool)
    seen = _by_name(findings)
    assert "no worker alive" in seen["workers"].detail and "ops worker" in seen["workers"].fix
    assert seen["worker"].status is Status.warn and "gone" in seen["worker"].detail
    assert failed(findings)


def test_several_workers_on_local_result_storage_warn(healthy: str) -> None:
    from prefect.settings import PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK, temporary_settings

    pool = f"doctor-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=healthy, timeout=10) as api:
        api.post("/work_pools/", json={"name": pool, "type": "process"}).raise_for_status()
        for name in ("a", "b"):  # what each worker's heartbeat tells the API
            api.post(f"/work_pools/{pool}/workers/heartbeat",
                     json={"name": f"{pool}-{name}", "heartbeat_interval_seconds": 60}).raise_for_status()
    found = _by_name(diagnose(topology="pool", pool=pool))["result storage"]
    assert found.status is Status.warn and "2 workers alive" in found.detail
    assert "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK" in found.fix

    with temporary_settings({PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK: "s3-bucket/shared-results"}):
        found = _by_name(diagnose(topology="pool", pool=pool))["result storage"]
    assert found.status is Status.ok and "s3-bucket/shared-results" in found.detail


def test_a_check_that_raises_is_a_fail_naming_the_exception(healthy: str) -> None:
    def broken(_doctor: Doctor) -> Finding:
        raise RuntimeError(f"cannot read postgresql://ops:{DB_PASSWORD}@db/ops")

    doctor = Doctor(Settings(database_url=f"postgresql://ops:{DB_PASSWORD}@db/ops"))
    findings = examine(doctor, [("broken", broken), ("fine", lambda _d: fail("fine", "x", "y"))])
    assert findings[0].status is Status.fail and "RuntimeError: cannot read" in findings[0].detail
    assert [f.name for f in findings] == ["broken", "fine"]
    _no_secret(findings)


def test_parts_that_accept_and_never_answer_fail_within_seconds(healthy: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A host that takes the connection and says nothing (a hung server, a firewall's tarpit) costs a timeout."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)  # connections complete in the backlog; nothing is ever read or written
        where = f"127.0.0.1:{hung.getsockname()[1]}"
        monkeypatch.setenv("OPS_GATEWAY_URL", f"http://{where}")
        monkeypatch.setenv("OPS_MAIL_URL", f"mailto://{where}?from=ops%40test.example&mode=insecure")
        monkeypatch.setenv("OPS_DATABASE_URL", f"postgresql+psycopg://ops:{DB_PASSWORD}@{where}/ops")
        started = time.monotonic()
        with temporary_settings({PREFECT_API_URL: f"http://{where}/api"}):
            findings = diagnose()
        took = time.monotonic() - started
    seen = _by_name(findings)
    for name in ("registry database", "Prefect API", "gateway", "mail server"):
        assert seen[name].status is Status.fail and where in seen[name].detail, render(findings)
    assert seen["work pool"].detail.startswith("skipped (the Prefect API does not answer")
    assert took < 30, f"the doctor took {took:.0f} s on parts that never answer"
    _no_secret(findings)


def test_settings_that_cannot_be_read_are_one_fail_naming_the_variable(healthy: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_LOCALE", "xx_NOWHERE")
    findings = diagnose()
    assert [(f.name, f.status) for f in findings] == [("settings", Status.fail)]
    assert "OPS_LOCALE 'xx_NOWHERE'" in findings[0].detail and failed(findings)
