"""Flow fixtures: every deployment in prefect.yaml served by a real `ops serve` process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.deployments import PROJECT_ROOT
from engine.stack import SERVE_READY_VARIABLE, stop_process_group
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


def start_serving(api: str, log: Path, *, extra_env: dict[str, str] | None = None) -> Served:
    """`python -m engine.cli serve` against `api`, once it says every deployment is registered.

    Readiness is the ready file `ops serve` writes (as `ops up` waits for it), not a deployment's `updated` time:
    a second `ops serve` of the same code registers nothing, so no time would move.
    """
    ready = log.with_name(f"{log.name}.ready")
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        SERVE_READY_VARIABLE: str(ready),
        **(extra_env or {}),
    }
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve"], cwd=PROJECT_ROOT, env=env,
                                   stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    served = Served(api=api, process=process, log=log)
    deadline = time.monotonic() + SERVE_STARTUP_SECONDS
    while not (ready.exists() and ready.read_text().strip() == str(process.pid)):
        if process.poll() is not None:
            pytest.fail(f"`ops serve` exited with code {process.returncode}:\n{served.log_tail()}")
        if time.monotonic() > deadline:
            stop_process_group(process)
            pytest.fail(f"`ops serve` was not ready within {SERVE_STARTUP_SECONDS} s:\n{served.log_tail()}")
        time.sleep(0.1)
    return served


@pytest.fixture
def served(prefect_api: str, gateway: Gateway, tmp_path: Path) -> Iterator[Served]:
    """`ops serve` against the session's Prefect server and this test's registry and mailbox.

    The OPS_* variables the `gateway` fixture set (registry, data dir, mail, gateway URL) are inherited; the
    process runs in a session of its own so teardown stops it and every flow run it started.
    """
    process = None
    try:
        served = start_serving(prefect_api, tmp_path / "serve.log")
        process = served.process
        yield served
    finally:
        if process is not None:
            stop_process_group(process)
