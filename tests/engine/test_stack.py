"""`ops up` smoke test: the whole local stack starts, answers, and stops on Ctrl-C leaving nothing behind."""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.deployments import specs
from tests.conftest import free_port

UP_SECONDS = 120
STOP_SECONDS = 30


@dataclass
class Output:
    """Lines a process printed, collected by a reader thread."""

    lines: list[str] = field(default_factory=list)

    def has(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    @property
    def text(self) -> str:
        return "".join(self.lines)


def _collect(stream: Iterator[bytes], into: Output) -> None:
    for raw in stream:
        into.lines.append(raw.decode(errors="replace"))


@dataclass(frozen=True)
class Proc:
    pid: int
    cmdline: list[str]
    environ: dict[str, str]


def _processes() -> list[Proc]:
    """Every live (non-zombie) process we may read, from /proc (psutil is not a dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = [a for a in (entry / "cmdline").read_bytes().decode(errors="replace").split("\0") if a]
            try:
                raw_env = (entry / "environ").read_bytes().decode(errors="replace")
            except PermissionError:
                raw_env = ""
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
        environ = dict(item.split("=", 1) for item in raw_env.split("\0") if "=" in item)
        found.append(Proc(pid=int(entry.name), cmdline=cmdline, environ=environ))
    return found


def _belongs_to(data_dir: Path, ports: list[int]) -> Callable[[Proc], bool]:
    """Whether a process is part of this stack: its command line or OPS_DATA_DIR names our data dir or ports."""
    marks = [str(data_dir)] + [f"{sep}{port}" for port in ports for sep in (":", "=")]

    def check(proc: Proc) -> bool:
        line = " ".join(proc.cmdline)
        return (any(mark in line for mark in marks) or any(arg == str(p) for arg in proc.cmdline for p in ports)
                or proc.environ.get("OPS_DATA_DIR", "").startswith(str(data_dir)))

    return check


def _wait(what: str, probe: Callable[[], bool], seconds: float, output: Output,
          process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + seconds
    while not probe():
        if process.poll() is not None:
            pytest.fail(f"`ops up` exited ({process.returncode}) while waiting for {what}:\n{output.text}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {seconds:.0f} s:\n{output.text}")
        time.sleep(0.2)


@dataclass(frozen=True)
class StackEnv:
    """A stack of its own: a temp data dir and free ports, nothing of the developer's environment."""

    data_dir: Path
    prefect_port: int
    gateway_port: int
    smtp_port: int
    env: dict[str, str]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def belongs(self) -> Callable[[Proc], bool]:
        return _belongs_to(self.data_dir, [self.prefect_port, self.gateway_port, self.smtp_port])


def stack_env(tmp_path: Path, **extra: str) -> StackEnv:
    data_dir = (tmp_path / "ops-data").resolve()
    ports = free_port(), free_port(), free_port()
    assert len(set(ports)) == 3
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPS_", "PREFECT_"))}
    env.update({
        "OPS_DATA_DIR": str(data_dir),
        "OPS_PREFECT_PORT": str(ports[0]),
        "OPS_GATEWAY_PORT": str(ports[1]),
        "OPS_SMTP_PORT": str(ports[2]),
        "OPS_GATEWAY_URL": f"http://127.0.0.1:{ports[1]}",
        "PYTHONUNBUFFERED": "1",
        **extra,
    })
    return StackEnv(data_dir, *ports, env=env)


def start_ops(stack: StackEnv, cwd: Path, *args: str) -> tuple[subprocess.Popen[bytes], Output]:
    """`ops ARGS` in a session of its own (as a terminal would run it), its output collected."""
    process = subprocess.Popen([sys.executable, "-m", "engine.cli", *args], cwd=cwd, env=stack.env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    assert process.stdout is not None
    output = Output()
    threading.Thread(target=_collect, args=(process.stdout, output), daemon=True).start()
    return process, output


def kill_everything_of(stack: StackEnv) -> None:
    """Whatever a failed test left of this stack."""
    for proc in _processes():
        if stack.belongs(proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)


def _deployment_names(client: httpx.Client, api: str) -> set[str]:
    response = client.post(f"{api}/deployments/filter", json={})
    response.raise_for_status()
    return {d["name"] for d in response.json()}


@pytest.mark.slow
def test_ops_up_serves_everything_and_ctrl_c_stops_all_of_it(tmp_path: Path) -> None:
    data_dir = (tmp_path / "ops-data").resolve()
    prefect_port, gateway_port, smtp_port = free_port(), free_port(), free_port()
    assert len({prefect_port, gateway_port, smtp_port}) == 3
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPS_", "PREFECT_"))}
    env.update({
        "OPS_DATA_DIR": str(data_dir),
        "OPS_PREFECT_PORT": str(prefect_port),
        "OPS_GATEWAY_PORT": str(gateway_port),
        "OPS_SMTP_PORT": str(smtp_port),
        "OPS_GATEWAY_URL": f"http://127.0.0.1:{gateway_port}",
        "PYTHONUNBUFFERED": "1",
    })
    belongs = _belongs_to(data_dir, [prefect_port, gateway_port, smtp_port])
    assert not [p for p in _processes() if belongs(p)], "something already uses this data dir or these ports"

    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "engine.cli", "up"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    assert process.stdout is not None
    output = Output()
    reader = threading.Thread(target=_collect, args=(process.stdout, output), daemon=True)
    reader.start()
    try:
        _wait('"opsdirector is up"', lambda: output.has("opsdirector is up"), UP_SECONDS, output, process)
        up_after = time.monotonic() - started
        api = f"http://127.0.0.1:{prefect_port}/api"
        gateway = f"http://127.0.0.1:{gateway_port}"
        wanted = {s.name for s in specs()}
        assert {"compliance-audit", "deadline-sweep"} <= wanted  # and whatever processes prefect.yaml adds
        with httpx.Client(timeout=10) as client:
            assert client.get(f"{api}/health").status_code == 200
            _wait("gateway", lambda: _ok(client, f"{gateway}/healthz"), 10, output, process)
            assert client.get(f"{gateway}/inbox").status_code == 200
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
                assert smtp.noop()[0] == 250
            # "up" means a Run works: every deployment is there, and the first Runs (raw POSTs, as the UI's Run
            # button sends them, no client retry) are not refused while Prefect schedules the new deployments.
            assert wanted <= _deployment_names(client, api)
            # A deployment holds every default, so its form opens filled; the others open a form first: a
            # facility, a purchase request, and a framework (this registry holds none) to choose.
            runnable = [d for d in client.post(f"{api}/deployments/filter", json={}).json()
                        if set(d["parameter_openapi_schema"].get("required", [])) <= set(d["parameters"])]
            assert len(runnable) >= len(wanted) - 3
            codes = [_create_run_an_hour_ahead(client, api, d) for d in runnable]
            assert codes.count(503) == 0, codes
            # A flow run in progress at Ctrl-C: its process (a child of `ops serve`) must go too.
            sweep = client.get(f"{api}/deployments/name/deadline-sweep/deadline-sweep").json()
            client.post(f"{api}/deployments/{sweep['id']}/create_flow_run", json={}).raise_for_status()
            _wait("a flow-run process", lambda: any(belongs(p) and "prefect.engine" in " ".join(p.cmdline)
                                                    for p in _processes()), 60, output, process)
        assert (data_dir / "prefect" / "postgres" / "PG_VERSION").is_file(), "the Prefect database is elsewhere"
        ours = [p for p in _processes() if belongs(p)]
        assert len(ours) >= 4, ours  # ops up, prefect server, ops serve, the flow run

        stopping = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does: the foreground group
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`ops up` still running {STOP_SECONDS} s after Ctrl-C:\n{output.text}")
        stopped_after = time.monotonic() - stopping
        reader.join(timeout=5)
        assert output.has("opsdirector stopped."), output.text
        deadline = time.monotonic() + 3  # killed processes may take a moment to disappear from /proc
        left = [p for p in _processes() if belongs(p)]
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = [p for p in _processes() if belongs(p)]
        assert not left, "left behind:\n" + "\n".join(f"{p.pid}: {' '.join(p.cmdline)}" for p in left)
        print(f"\n`ops up`: up after {up_after:.1f} s, stopped {stopped_after:.1f} s after Ctrl-C "
              f"(exit code {process.returncode})")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        for proc in _processes():
            if belongs(proc):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)


def _ok(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _create_run_an_hour_ahead(client: httpx.Client, api: str, deployment: dict[str, Any]) -> int:
    """The Run button's write (an hour ahead, so no flow-run process starts); the status code it got."""
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = client.post(f"{api}/deployments/{deployment['id']}/create_flow_run",
                           json={"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": later}},
                                 "parameters": deployment["parameters"]})
    assert response.status_code in (201, 503), response.text
    return response.status_code


def _write_two_deployments(path: Path, prefix: str, sweep_cron: str) -> None:
    """A prefect.yaml of two deployments of real flows, named for this test alone."""
    path.write_text(f"""
deployments:
  - name: {prefix}-sweep
    entrypoint: flows/engine/deadline_sweep/flow.py:deadline_sweep
    schedules:
      - cron: "{sweep_cron}"
        timezone: UTC
        active: true
  - name: {prefix}-report
    entrypoint: flows/reporting/operations_report/flow.py:operations_report
    parameters:
      period: last-week
    schedules:
      - cron: "0 7 * * 1"
        timezone: Europe/London
        active: true
""")


def _held(client: httpx.Client, api: str, names: list[str]) -> dict[str, dict[str, Any]]:
    response = client.post(f"{api}/deployments/filter", json={"deployments": {"name": {"any_": names}}})
    response.raise_for_status()
    return {d["name"]: d for d in response.json()}


def test_a_start_registers_only_what_the_api_does_not_hold_as_defined(
        prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import deployments

    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    prefix = f"registration-{uuid.uuid4().hex[:8]}"
    sweep, report = f"{prefix}-sweep", f"{prefix}-report"
    path = tmp_path / "prefect.yaml"
    _write_two_deployments(path, prefix, sweep_cron="* * * * *")
    with httpx.Client(timeout=10) as client:
        ids, registered = deployments.register(path)
        assert registered == sorted([sweep, report])
        first = _held(client, prefect_api, [sweep, report])
        assert {name: str(i) for name, i in ids.items()} == {name: d["id"] for name, d in first.items()}
        fingerprint = deployments.code_fingerprint()
        for spec in deployments.specs(path):
            assert first[spec.name]["version"] == deployments.definition_version(spec, fingerprint)

        # Nothing changed: nothing registered, nothing written (the server would drop and re-create the runs).
        assert deployments.register(path) == (ids, [])
        assert {n: d["updated"] for n, d in _held(client, prefect_api, [sweep, report]).items()} == {
            n: d["updated"] for n, d in first.items()}

        # prefect.yaml changed for one; the other paused in the UI: both registered again, as defined.
        _write_two_deployments(path, prefix, sweep_cron="*/5 * * * *")
        client.post(f"{prefect_api}/deployments/{ids[report]}/pause_deployment").raise_for_status()
        assert deployments.register(path) == (ids, sorted([sweep, report]))
        held = _held(client, prefect_api, [sweep, report])
        assert [s["schedule"]["cron"] for s in held[sweep]["schedules"]] == ["*/5 * * * *"]
        assert not held[report]["paused"]

        # A schedule switched off in the UI is switched back on.
        schedule = held[report]["schedules"][0]["id"]
        client.patch(f"{prefect_api}/deployments/{ids[report]}/schedules/{schedule}",
                     json={"active": False}).raise_for_status()
        assert deployments.register(path) == (ids, [report])
        assert [s["active"] for s in _held(client, prefect_api, [report])[report]["schedules"]] == [True]

        # Our code (parameter models, docstrings), Prefect or pydantic changed: everything again.
        monkeypatch.setattr(deployments, "code_fingerprint", lambda: "other code")
        assert deployments.register(path) == (ids, sorted([sweep, report]))


def test_the_code_fingerprint_follows_the_source_and_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import deployments

    here = deployments.code_fingerprint()
    assert deployments.code_fingerprint() == here
    monkeypatch.chdir(tmp_path)  # Prefect stores each entrypoint relative to the serving process's directory
    assert deployments.code_fingerprint() != here


def test_the_stacks_prefect_server_is_named_by_its_database_not_its_port(tmp_path: Path) -> None:
    """What `ops serve` notes it registered is found again by the next `ops up` on another port (else it imports
    every flow while the server starts), and not by a stack on another database."""
    from engine.settings import Settings
    from engine.stack import own_server

    here = own_server(Settings(data_dir=tmp_path, prefect_port=4200))
    assert own_server(Settings(data_dir=tmp_path, prefect_port=4300)) == here
    assert own_server(Settings(data_dir=tmp_path / "elsewhere", prefect_port=4200)) != here
    url = "postgresql+asyncpg://prefect:hunter2@db.internal/prefect"
    named = own_server(Settings(data_dir=tmp_path, prefect_database_url=url))
    assert named != here and "hunter2" not in named
