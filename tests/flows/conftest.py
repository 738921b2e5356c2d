"""Flow fixtures: every deployment in prefect.yaml served by a real `ops serve` process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

from engine.deployments import PROJECT_ROOT
from engine.stack import SERVE_READY_VARIABLE, stop_process_group
from engine.stack_record import descendants
from tests.conftest import Gateway

AUDIT_DEPLOYMENT = "compliance-audit/compliance-audit"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topology: the README's topology beyond one machine (PostgreSQL, a Prefect "
                                       "server, workers and gateways as processes of their own): -m topology")
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


WORKER_STARTUP_SECONDS = 120


@dataclass
class Worker:
    """An `ops worker` process in a directory of its own, as on a machine of its own."""

    directory: Path
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def starts(self, run_id: object) -> int:
        """How often flow run `run_id` started on this worker (a resumed run starts again): each start's process
        logs its "View at …/runs/flow-run/<id>" line to the worker's output. A worker's "submitting flow run" line
        says less: two workers both try, and the one that loses the race aborts."""
        return self.log.read_text(errors="replace").count(f"/runs/flow-run/{run_id}\n")

    def ran(self, run_id: object) -> bool:
        return self.starts(run_id) > 0

    def processes(self) -> list[int]:
        """The worker and every process below it: each flow run is in a session of its own (Prefect's doing), so
        the worker's process group alone is not all a machine runs."""
        return [self.process.pid, *descendants(self.process.pid)]

    def lose_machine(self) -> None:
        """SIGKILL the worker and everything it started, at once: the machine is gone."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM the worker (it stops polling), then whatever of its flow runs is left."""
        below = self.processes()[1:]
        stop_process_group(self.process)
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def start_worker(api: str, directory: Path, log: Path, *, pool: str | None = None, limit: int | None = None,
                 extra_env: dict[str, str] | None = None) -> Worker:
    """`ops worker` (the installed console script) in `directory`, created empty, once it has said it started.

    It inherits this process's OPS_* variables (the test's registry, mail server, gateway URL), as a machine set
    up with the same configuration would have them.
    """
    directory.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "INFO", **(extra_env or {})}
    command = [str(Path(sys.executable).with_name("ops")), "worker",
               *(["--pool", pool] if pool else []), *(["--limit", str(limit)] if limit else [])]
    with log.open("wb") as handle:
        process = subprocess.Popen(command, cwd=directory, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    worker = Worker(directory=directory, process=process, log=log)
    deadline = time.monotonic() + WORKER_STARTUP_SECONDS
    while "started!" not in log.read_text(errors="replace"):
        if process.poll() is not None:
            pytest.fail(f"`ops worker` exited with code {process.returncode}:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            worker.stop()
            pytest.fail(f"`ops worker` did not start within {WORKER_STARTUP_SECONDS} s:\n{worker.log_tail()}")
        time.sleep(0.1)
    return worker


def run_state(run_id: UUID) -> StateType | None:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    return state.type if state is not None else None


def wait_for_state(run_id: UUID, wanted: StateType, seconds: float = 120) -> float:
    """When (time.monotonic()) the run was first seen in `wanted`; fails on a final state that is not it."""
    deadline = time.monotonic() + seconds
    while (state := run_state(run_id)) != wanted:
        assert state not in {StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}, f"run {run_id}: {state}"
        assert time.monotonic() < deadline, f"run {run_id} still {state} after {seconds:.0f} s"
        time.sleep(0.1)
    return time.monotonic()


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
