"""Flow fixtures: every deployment in prefect.yaml served by a real `ops serve` process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from engine.deployments import PROJECT_ROOT
from engine.stack import stop_process_group
from tests.conftest import Gateway

AUDIT_DEPLOYMENT = "compliance-audit/compliance-audit"
SERVE_STARTUP_SECONDS = 120


@dataclass
class Served:
    """An `ops serve` process and the Prefect API its deployments are registered with."""

    api: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


def _registered_since(client: httpx.Client, api: str, name: str, since: datetime) -> bool:
    """Whether deployment `name` exists and was (re)registered at or after `since`."""
    response = client.get(f"{api}/deployments/name/{name}")
    if response.status_code != 200:
        return False
    updated = datetime.fromisoformat(response.json()["updated"])
    return updated >= since


@pytest.fixture
def served(prefect_api: str, gateway: Gateway, tmp_path: Path) -> Iterator[Served]:
    """`python -m engine.cli serve` against the session's Prefect server and this test's registry and mailbox.

    The OPS_* variables the `gateway` fixture set (registry, data dir, mail, gateway URL) are inherited; the
    process runs in a session of its own so teardown stops it and every flow run it started.
    """
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    log = tmp_path / "serve.log"
    # The server stores timestamps to the microsecond; a little slack for clock rounding.
    since = datetime.now(UTC) - timedelta(seconds=1)
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve"], cwd=PROJECT_ROOT, env=env,
                                   stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    served = Served(api=prefect_api, process=process, log=log)
    try:
        deadline = time.monotonic() + SERVE_STARTUP_SECONDS
        with httpx.Client(timeout=5) as client:
            while not _registered_since(client, prefect_api, AUDIT_DEPLOYMENT, since):
                if process.poll() is not None:
                    pytest.fail(f"`ops serve` exited with code {process.returncode}:\n{served.log_tail()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{AUDIT_DEPLOYMENT} was not registered within {SERVE_STARTUP_SECONDS} s:\n"
                                f"{served.log_tail()}")
                time.sleep(0.25)
        yield served
    finally:
        stop_process_group(process)
