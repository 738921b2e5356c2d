"""`ops up` under kill -9: a killed `ops serve` comes back, a killed `ops up` takes its children with it, a second
`ops up` over a live stack refuses and says what runs, `ops down` stops it, and no stop leaves a schedule paused."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.deployments import specs
from engine.stack import stop_process_group, wait_until_up
from engine.stack_record import StackProcess, StackRecord, command_line, is_alive
from tests.conftest import free_port
from tests.engine.test_stack import UP_SECONDS, Output, StackEnv, _processes, kill_everything_of, stack_env, start_ops

pytestmark = pytest.mark.timeout(240)


def _until(what: str, probe: Callable[[], bool], seconds: float, explain: Callable[[], str] = str,
           process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not probe():
        if process is not None and process.poll() is not None:
            pytest.fail(f"exited ({process.returncode}) while waiting for {what}\n{explain()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {seconds:.0f} s\n{explain()}")
        time.sleep(0.2)


def _recorded(stack: StackEnv) -> dict[str, StackProcess]:
    return {p.what: p for p in StackRecord(stack.data_dir).read()}


def _start(client: httpx.Client, api: str, name: str, parameters: dict[str, Any] | None = None) -> str:
    deployment = client.post(f"{api}/deployments/filter", json={"deployments": {"name": {"any_": [name]}}}).json()[0]
    response = client.post(f"{api}/deployments/{deployment['id']}/create_flow_run",
                           json={"parameters": parameters} if parameters else {})
    response.raise_for_status()
    return str(response.json()["id"])


def _drill_alerted(stack: StackEnv) -> bool:
    """Whether the catcher holds a drill alert (the drill then waits minutes for answers)."""
    return any(b"DRILL" in mail.read_bytes() for mail in (stack.data_dir / "mailbox").rglob("*") if mail.is_file())


def _start_long_drill(client: httpx.Client, stack: StackEnv, output: Output) -> str:
    """A drill that has alerted and waits ten minutes for answers: a run in flight."""
    drill = _start(client, stack.api, "emergency-drill", {
        "facility": "HQ", "window_minutes": 10, "escalate_after_minutes": 5})
    _until("the drill alerting", lambda: _drill_alerted(stack), 60,
           lambda: f"{_state(client, stack.api, drill)}\n{output.text}")
    assert _state(client, stack.api, drill) == "RUNNING"
    return drill


def _run_deadline_sweep(client: httpx.Client, api: str) -> str:
    return _start(client, api, "deadline-sweep")


def _state(client: httpx.Client, api: str, run_id: str) -> str:
    return str(client.get(f"{api}/flow_runs/{run_id}").json()["state"]["type"])


def _paused(client: httpx.Client, api: str) -> list[str]:
    """Deployments from prefect.yaml that are paused or have an inactive schedule prefect.yaml wants active."""
    wanted = {s.name: s for s in specs()}
    found = []
    for deployment in client.post(f"{api}/deployments/filter", json={}).json():
        spec = wanted.get(deployment["name"])
        if spec is None:
            continue
        inactive = [s for s in deployment["schedules"] if not s["active"]]
        if deployment["paused"] or len(inactive) > sum(1 for s in spec.schedules if not s.get("active", True)):
            found.append(deployment["name"])
    return found


@pytest.mark.slow
def test_a_killed_ops_serve_comes_back_and_a_killed_ops_up_leaves_nothing_running(tmp_path: Path) -> None:
    stack = stack_env(tmp_path)
    first, output = start_ops(stack, tmp_path, "up")
    try:
        _until('"opsdirector is up"', lambda: output.has("opsdirector is up"), UP_SECONDS, lambda: output.text,
               first)
        with httpx.Client(timeout=10) as client:
            serve = _recorded(stack)["ops serve"]
            os.kill(serve.pid, signal.SIGKILL)
            _until("restart of ops serve", lambda: output.has("ops serve exited (code -9); restarted"), 10,
                   lambda: output.text)
            again = _recorded(stack)["ops serve"]
            assert again.pid != serve.pid and is_alive(again)
            run_id = _run_deadline_sweep(client, stack.api)
            _until("the sweep run after the restart completing",
                   lambda: _state(client, stack.api, run_id) == "COMPLETED", 60, lambda: output.text)
            assert _paused(client, stack.api) == []

            # A drill in progress when the stack dies must stay one the next stack's sweep takes over: not
            # Cancelled, which is what Prefect's graceful stop of `ops serve` makes of the runs in flight.
            drill = _start_long_drill(client, stack, output)

        children = [p for p in StackRecord(stack.data_dir).read() if p.what != "ops up"]
        assert {p.what for p in children} >= {"Prefect server", "ops serve"}
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=5)
        _until("the children of a killed `ops up` ending", lambda: not any(is_alive(p) for p in children), 15,
               lambda: "\n".join(p.describe() for p in children if is_alive(p)))

        # `make run` again over what the kill left (a stale record, a database stopped mid-flight) just starts.
        second, output = start_ops(stack, tmp_path, "up")
        _until('"opsdirector is up" again', lambda: output.has("opsdirector is up"), UP_SECONDS,
               lambda: output.text, second)
        with httpx.Client(timeout=10) as client:
            assert _paused(client, stack.api) == []
            assert _state(client, stack.api, drill) != "CANCELLED"
        # A dead Prefect server is not papered over: the stack says so and stops, leaving nothing behind.
        recorded = list(_recorded(stack).values())
        os.kill(_recorded(stack)["Prefect server"].pid, signal.SIGKILL)
        assert second.wait(timeout=30) == 1
        assert output.has("Prefect server exited (code -9)"), output.text
        assert not any(is_alive(p) for p in recorded)
    finally:
        for process in (first, locals().get("second")):
            if isinstance(process, subprocess.Popen) and process.poll() is None:
                process.kill()
        kill_everything_of(stack)


@pytest.mark.slow
def test_ops_up_over_a_live_stack_refuses_naming_it_and_ops_down_stops_it(tmp_path: Path) -> None:
    stack = stack_env(tmp_path)
    running, output = start_ops(stack, tmp_path, "up")
    try:
        _until('"opsdirector is up"', lambda: output.has("opsdirector is up"), UP_SECONDS, lambda: output.text,
               running)
        with httpx.Client(timeout=10) as client:
            drill = _start_long_drill(client, stack, output)
        recorded = list(_recorded(stack).values())
        second = subprocess.run([sys.executable, "-m", "engine.cli", "up"], cwd=tmp_path, env=stack.env,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1, second.stdout + second.stderr
        for process in recorded:
            assert f"pid {process.pid}" in second.stderr and process.what in second.stderr, second.stderr
        assert "ops down" in second.stderr
        assert running.poll() is None, "the refusal touched the running stack"
        status = subprocess.run([sys.executable, "-m", "engine.cli", "status"], cwd=tmp_path, env=stack.env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and status.stdout.count("running") == len(recorded), status.stdout

        down = subprocess.run([sys.executable, "-m", "engine.cli", "down"], cwd=tmp_path, env=stack.env,
                              capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        running.wait(timeout=30)
        assert running.returncode == 0 and output.has("opsdirector stopped."), output.text
        assert not any(is_alive(p) for p in recorded)
        assert not any(stack.belongs(p) for p in _processes())

        # Started again, on another port: nothing paused, and the drill the stop interrupted is left for the sweep
        # to take over. Nothing is registered again: the first start registered the forms of the seeded registry.
        port = free_port()
        stack = replace(stack, prefect_port=port, env={**stack.env, "OPS_PREFECT_PORT": str(port)})
        running, output = start_ops(stack, tmp_path, "up")
        _until('"opsdirector is up" again', lambda: output.has("opsdirector is up"), UP_SECONDS,
               lambda: output.text, running)
        serving = [line for line in (stack.data_dir / "logs" / "deployments.log").read_text().splitlines()
                   if line.startswith("serving ")]
        assert serving[-1].endswith("registered: none (all unchanged)"), serving
        with httpx.Client(timeout=10) as client:
            assert _paused(client, stack.api) == []
            assert _state(client, stack.api, drill) != "CANCELLED"
        os.killpg(running.pid, signal.SIGINT)
        assert running.wait(timeout=30) == 0
    finally:
        if running.poll() is None:
            running.kill()
        kill_everything_of(stack)


def test_ops_up_refuses_over_processes_a_killed_stack_left_and_ops_down_stops_them(tmp_path: Path) -> None:
    """Where no parent-death signal exists (or it was lost), the record still finds the leftovers."""
    stack = stack_env(tmp_path)
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        _until("the leftover to start", lambda: "time.sleep" in " ".join(command_line(leftover.pid) or []), 5)
        stack.data_dir.mkdir(parents=True)
        (stack.data_dir / "stack.json").write_text(json.dumps({"processes": [
            {"pid": leftover.pid, "what": "ops serve", "cmdline": command_line(leftover.pid)},
            # A recorded pid now used by another program (pid reuse) is not ours: neither named nor stopped.
            {"pid": stranger.pid, "what": "Prefect server", "cmdline": ["something", "else"]},
        ]}))
        refused = subprocess.run([sys.executable, "-m", "engine.cli", "up"], cwd=tmp_path, env=stack.env,
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1
        assert f"pid {leftover.pid}" in refused.stderr and "ops serve" in refused.stderr, refused.stderr
        assert str(stranger.pid) not in refused.stderr and "ops down" in refused.stderr

        down = subprocess.run([sys.executable, "-m", "engine.cli", "down"], cwd=tmp_path, env=stack.env,
                              capture_output=True, text=True, timeout=60)
        assert down.returncode == 0 and f"pid {leftover.pid}" in down.stdout, down.stdout + down.stderr
        assert leftover.wait(timeout=10) == -signal.SIGTERM
        assert stranger.poll() is None
        assert not (stack.data_dir / "stack.json").exists()
    finally:
        for process in (leftover, stranger):
            process.kill()
            process.wait()


def test_ops_up_refuses_a_port_another_program_holds(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        stack = stack_env(tmp_path, OPS_GATEWAY_PORT=str(port))
        refused = subprocess.run([sys.executable, "-m", "engine.cli", "up"], cwd=tmp_path, env=stack.env,
                                 capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert f"port {port} (link gateway)" in refused.stderr and "OPS_GATEWAY_PORT" in refused.stderr, refused.stderr


def _serve_until_polled(prefect_api: str, tmp_path: Path, client: httpx.Client) -> subprocess.Popen[bytes]:
    """`ops serve` against the session's server, once its runner polls (serve() pauses only what it got to serve)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPS_", "PREFECT_"))}
    env.update({"OPS_DATA_DIR": str(tmp_path / "ops-data"), "PREFECT_API_URL": prefect_api,
                "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    started = time.time()
    serve = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve"], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

    def polled() -> bool:
        names = {s.name for s in specs()}
        fresh = {d["name"] for d in client.post(f"{prefect_api}/deployments/filter", json={}).json()
                 if d["last_polled"] and _timestamp(d["last_polled"]) >= started}
        return names <= fresh

    try:
        _until("deployments served", polled, 90)
    except BaseException:
        os.killpg(serve.pid, signal.SIGKILL)
        raise
    return serve


def _stop(serve: subprocess.Popen[bytes]) -> str:
    if serve.poll() is None:
        os.killpg(serve.pid, signal.SIGTERM)
    try:
        printed, _ = serve.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(serve.pid, signal.SIGKILL)
        printed, _ = serve.communicate()
    return printed.decode(errors="replace")


def _auto_scheduled(client: httpx.Client, api: str, deployment_id: str) -> list[dict[str, Any]]:
    runs = client.post(f"{api}/flow_runs/filter", json={
        "deployments": {"id": {"any_": [deployment_id]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        "sort": "NEXT_SCHEDULED_START_TIME_ASC"}).json()
    return [run for run in runs if run["auto_scheduled"] and run["run_count"] == 0]


@pytest.fixture
def scheduling_prefect_api(tmp_path: Path) -> Iterator[str]:
    """A Prefect server of this test's own: the session's test server is ephemeral and runs no scheduler."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(tmp_path / "prefect-server"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_ENABLED": "false"})
    with (tmp_path / "prefect-server.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/api/health", 90, server)
        yield f"http://127.0.0.1:{port}/api"
    finally:
        stop_process_group(server)


@pytest.mark.slow
def test_stopping_ops_serve_leaves_every_schedule_active_and_a_restart_runs_what_was_missed_once(
        scheduling_prefect_api: str, tmp_path: Path) -> None:
    """Prefect's serve() paused what it served when it stopped: a restarted stack ran without its schedules.
    Active schedules fall due while nothing serves them; the restart keeps one catch-up run, not one per missed
    occasion. (The sweep has no schedule: the engine loop's first sweep at the restart does what it missed, once;
    tests/engine/test_loop.py.)"""
    prefect_api = scheduling_prefect_api
    with httpx.Client(timeout=10) as client:
        serve = _serve_until_polled(prefect_api, tmp_path, client)
        printed = _stop(serve)
        assert _paused(client, prefect_api) == [], printed

        daily = client.get(f"{prefect_api}/deployments/name/inventory-reorder/inventory-reorder").json()
        _until("the scheduler's runs of the daily reorder",
               lambda: len(_auto_scheduled(client, prefect_api, daily["id"])) >= 3, 90)
        missed = _auto_scheduled(client, prefect_api, daily["id"])[:3]
        for minutes_ago, run in zip((30, 20, 10), missed, strict=True):  # as if the stack had been down 30 min
            due = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()
            client.post(f"{prefect_api}/flow_runs/{run['id']}/set_state", json={
                "state": {"type": "SCHEDULED", "name": "Late", "state_details": {"scheduled_time": due}},
                "force": True}).raise_for_status()

        printed = _stop(_serve_until_polled(prefect_api, tmp_path, client))
        kept = [run["id"] for run in missed if client.get(f"{prefect_api}/flow_runs/{run['id']}").status_code == 200]
        assert kept == [missed[2]["id"]], printed
        assert _paused(client, prefect_api) == [], printed


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
