"""How long after an approval is the waiting flow run running again? Ours (link gateway) against bare Prefect.

Everything is real and local and thrown away afterwards: a Prefect server, one runner process serving both
deployments in benchmarks/_latency_flows.py, a SQLite registry, and the link gateway over HTTP on loopback.

    .venv/bin/python benchmarks/approval_latency.py [--runs N]
    .venv/bin/python benchmarks/approval_latency.py --smoke     # one run of each kind, no settling: figures meaningless

All runs of both kinds are started first and left suspended; then they are resumed one at a time, the two kinds
alternating, each timed from just before the resume call (baseline) or the form POST (ours) to the run's state
being RUNNING and then COMPLETED, polling the API every 50 ms. The server's own state timestamps split each
resume into phases (API → runner pickup → process start → flow done).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))  # for benchmarks._exit, as the other benchmarks do
POLL_SECONDS = 0.05
POLL_RUNNER_SECONDS = 1  # the runner's; --poll sets it
QUIET_SECONDS = 6.0
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
LOCKED = "(sqlite3.OperationalError) database is locked"  # once per failed statement in the server log
PHASES = {  # server state reached after the resume → what the time before it was spent on
    "SCHEDULED": "API accepted resume",
    "PENDING": "runner picked it up",
    "RUNNING": "flow process running",
    "COMPLETED": "flow finished",
}
SHORT = {"API accepted resume": "resume", "runner picked it up": "pickup", "flow process running": "start",
         "flow finished": "finish"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Prefect and the registry read their settings when first imported: everything points at a scratch directory.
WORK = Path(tempfile.mkdtemp(prefix="ops-latency-"))
PREFECT_PORT = _free_port()
GATEWAY_PORT = _free_port()
API = f"http://127.0.0.1:{PREFECT_PORT}/api"
GATEWAY = f"http://127.0.0.1:{GATEWAY_PORT}"
os.environ.update({
    "PREFECT_HOME": str(WORK / "prefect"),
    "PREFECT_API_URL": API,
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "OPS_DATA_DIR": str(WORK / "data"),
    "OPS_DATABASE_URL": f"sqlite:///{WORK / 'data' / 'registry.db'}",
    "OPS_GATEWAY_URL": GATEWAY,
    "OPS_MAIL_CATCHER": "false",
})
(WORK / "data").mkdir()

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from sqlmodel import select  # noqa: E402

from benchmarks._exit import terminate_as_exit  # noqa: E402
from demo.browser import answer_link  # noqa: E402
from engine import links, runs  # noqa: E402
from engine.gateway import create_app  # noqa: E402
from registry import HumanStep, Person, session  # noqa: E402
from registry.migrate import upgrade  # noqa: E402

sys.path.insert(0, str(PROJECT_ROOT))
from benchmarks._latency_flows import BASELINE_FLOW, DEPLOYMENT, OURS_FLOW  # noqa: E402


@dataclass
class Sample:
    kind: str
    run_id: str
    to_running: float = 0.0
    to_completed: float = 0.0
    post_seconds: float | None = None
    running_from_history: bool = False  # RUNNING fell between two polls; its server timestamp was used
    phases: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- processes


class Stack:
    """The child processes and the gateway thread; `close()` stops every one of them, whatever happened."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.gateway: uvicorn.Server | None = None
        self.gateway_thread: threading.Thread | None = None

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = WORK / f"{name}.log"
        with log.open("wb") as handle:
            # A session of its own: killing the group also kills the flow-run processes it spawned.
            process = subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.children.append((name, process, log))
        return process

    def start_gateway(self) -> None:
        self.gateway = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=GATEWAY_PORT,
                                                     log_level="warning"))
        self.gateway_thread = threading.Thread(target=self.gateway.run, daemon=True)
        self.gateway_thread.start()
        _wait("the gateway", lambda: self.gateway is not None and self.gateway.started, 15)

    def tails(self, lines: int = 30) -> str:
        parts = []
        for name, _process, log in self.children:
            text = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
            parts.append(f"--- {name} ({log}) ---\n" + "\n".join(text))
        return "\n".join(parts)

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.should_exit = True
        for _name, process, _log in reversed(self.children):
            _stop_group(process)
        if self.gateway_thread is not None:
            self.gateway_thread.join(timeout=5)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass
    # The group may outlive its leader (a flow-run process still exiting): make sure nothing is left.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _wait(what: str, probe: Callable[[], Any], seconds: float, every: float = 0.1,
          process: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with code {process.returncode}")
        try:
            found = probe()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(every)
    raise RuntimeError(f"gave up waiting for {what} after {seconds:.0f} s")


# ---------------------------------------------------------------- the API


def _state(http: httpx.Client, run_id: str) -> str:
    response = http.get(f"{API}/flow_runs/{run_id}")
    response.raise_for_status()
    return str(response.json()["state"]["type"])


def _states_since(http: httpx.Client, run_id: str, since: datetime) -> list[tuple[str, str, datetime]]:
    """(type, name, timestamp) of the run's states stamped at or after `since`, oldest first."""
    response = http.get(f"{API}/flow_run_states/", params={"flow_run_id": run_id})
    response.raise_for_status()
    found = [(s["type"], s["name"], datetime.fromisoformat(s["timestamp"])) for s in response.json()]
    return sorted((s for s in found if s[2] >= since), key=lambda s: s[2])


def _deployment_registered(http: httpx.Client, name: str) -> bool:
    return http.get(f"{API}/deployments/name/{name}").status_code == 200


def _all_paused(http: httpx.Client, run_ids: list[str]) -> bool:
    states = {run_id: _state(http, run_id) for run_id in run_ids}
    ended = {r: s for r, s in states.items() if s in FINAL_STATES}
    if ended:
        raise RuntimeError(f"runs ended before they were resumed: {ended}")
    return all(s == "PAUSED" for s in states.values())


# ---------------------------------------------------------------- timing one resume


def _follow(http: httpx.Client, runner: subprocess.Popen[bytes], sample: Sample, t0: float, wall0: datetime) -> None:
    """Poll every 50 ms from `t0` until the run is RUNNING, then COMPLETED; fill in the sample."""
    seen_running: float | None = None
    deadline = t0 + 120
    while True:
        if runner.poll() is not None:
            raise RuntimeError(f"the runner exited with code {runner.returncode}")
        state = _state(http, sample.run_id)
        now = time.perf_counter()
        if state == "RUNNING" and seen_running is None:
            seen_running = now - t0
        if state == "COMPLETED":
            sample.to_completed = now - t0
            break
        if state in FINAL_STATES:
            raise RuntimeError(f"{sample.kind} run {sample.run_id} ended {state}")
        if now > deadline:
            raise RuntimeError(f"{sample.kind} run {sample.run_id} still {state} 120 s after the resume")
        time.sleep(POLL_SECONDS)
    history = _states_since(http, sample.run_id, wall0)
    stamps: dict[str, datetime] = {}
    for kind, _name, stamp in history:  # the first of each type: PENDING "Pending", not "Submitting"
        stamps.setdefault(kind, stamp)
    if seen_running is None:  # RUNNING lasted less than one poll: take the server's timestamp
        seen_running = (stamps["RUNNING"] - wall0).total_seconds()
        sample.running_from_history = True
    sample.to_running = seen_running
    previous = wall0
    for kind, label in PHASES.items():
        if kind in stamps:
            sample.phases[label] = (stamps[kind] - previous).total_seconds()
            previous = stamps[kind]


def _resume_baseline(http: httpx.Client, runner: subprocess.Popen[bytes], run_id: str) -> Sample:
    sample = Sample("bare Prefect", run_id)
    with get_client(sync_client=True) as client:
        wall0, t0 = _utc_now(), time.perf_counter()
        result = client.resume_flow_run(uuid.UUID(run_id), run_input={"decision": "approve"})
    if result.status.value != "ACCEPT":
        raise RuntimeError(f"resume of {run_id} was not accepted: {result}")
    _follow(http, runner, sample, t0, wall0)
    return sample


def _resume_ours(http: httpx.Client, runner: subprocess.Popen[bytes], run_id: str, key: str,
                 person_id: int) -> Sample:
    sample = Sample("ours (gateway)", run_id)
    with session() as db:
        step = db.exec(select(HumanStep).where(HumanStep.key == key)).one()
        token = links.issue(db, step=step, person_id=person_id)
    marks: dict[str, Any] = {}

    def _on_request(request: httpx.Request) -> None:
        if request.method == "POST":  # answer_link GETs the page first; the clock starts at the POST
            marks["wall0"], marks["t0"] = _utc_now(), time.perf_counter()

    with httpx.Client(timeout=60, event_hooks={"request": [_on_request]}) as browser:
        response = answer_link(browser, links.url_for(token), {"decision": "approve", "comment": ""})
        posted = time.perf_counter()
    response.raise_for_status()  # a refused or invalid answer is a 4xx page
    sample.post_seconds = posted - marks["t0"]
    _follow(http, runner, sample, marks["t0"], marks["wall0"])
    return sample


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _flow_processes(runner: subprocess.Popen[bytes]) -> list[int]:
    """Flow-run processes the runner has going: the other members of its process group (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == runner.pid:
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) == runner.pid:  # field 5, pgrp
            members.append(int(entry.name))
    return members


def _settle(runner: subprocess.Popen[bytes]) -> None:
    """Wait for the finished run's process to exit (it writes to the server for a second after COMPLETED), then
    start the next clock at a random point of the runner's poll cycle: with a fixed gap every resume would
    land at the same phase of it, and one kind could be lucky every time."""
    _wait("the last flow-run process to exit", lambda: not _flow_processes(runner), 30, 0.05, runner)
    time.sleep(random.uniform(0.0, POLL_RUNNER_SECONDS))


def _describe(sample: Sample) -> str:
    mark = "*" if sample.running_from_history else ""
    phases = " + ".join(f"{SHORT[label]} {seconds:.2f}" for label, seconds in sample.phases.items()
                        if label != "flow finished")
    return f"{sample.kind} {sample.to_running:.2f}{mark} s ({phases})"


# ---------------------------------------------------------------- report


def _report(samples: list[Sample], runs_per_kind: int, setup_seconds: float, total_seconds: float,
            locked: int) -> None:
    from benchmarks._table import Row, print_rows

    kinds = ["bare Prefect", "ours (gateway)"]
    print()
    print(f"Approval → waiting run RUNNING again, {runs_per_kind} run(s) per kind "
          f"(runner poll interval {POLL_RUNNER_SECONDS} s, API polled every {POLL_SECONDS * 1000:.0f} ms)")
    header = (f"{'kind':<16} {'running med':>12} {'running max':>12} {'completed med':>14} {'completed max':>14} "
              f"{'POST med':>9}")
    print(header)
    print("-" * len(header))
    medians: dict[str, float] = {}
    for kind in kinds:
        mine = [s for s in samples if s.kind == kind]
        running = [s.to_running for s in mine]
        completed = [s.to_completed for s in mine]
        posts = [s.post_seconds for s in mine if s.post_seconds is not None]
        medians[kind] = statistics.median(running)
        post = f"{statistics.median(posts):>8.3f}s" if posts else f"{'-':>9}"
        print(f"{kind:<16} {statistics.median(running):>11.2f}s {max(running):>11.2f}s "
              f"{statistics.median(completed):>13.2f}s {max(completed):>13.2f}s {post}")
    print()
    print("Where the time goes (median s, from the server's state timestamps):")
    labels = list(PHASES.values())
    print(f"{'kind':<16} " + " ".join(f"{label:>21}" for label in labels))
    for kind in kinds:
        mine = [s for s in samples if s.kind == kind]
        cells = []
        for label in labels:
            values = [s.phases[label] for s in mine if label in s.phases]
            cells.append(f"{statistics.median(values):>21.3f}" if values else f"{'-':>21}")
        print(f"{kind:<16} " + " ".join(cells))
    print()
    if any(s.running_from_history for s in samples):
        print("* RUNNING fell between two polls; the server's RUNNING timestamp was used.")
    if locked:
        print(f"The Prefect server answered 'database is locked' (503) {locked} time(s) while resuming: the client "
              "retried after a back-off, which shows in 'API accepted resume'.")
    print(f"Setup {setup_seconds:.0f} s, whole benchmark {total_seconds:.0f} s.")
    ours, bare = medians["ours (gateway)"], medians["bare Prefect"]
    print()
    print(f"approval -> running again: ours {ours:.1f} s median vs bare Prefect {bare:.1f} s "
          f"({ours - bare:+.1f} s)")
    finished = {kind: statistics.median(s.to_completed for s in samples if s.kind == kind) for kind in kinds}
    print_rows([Row("approval → waiting run RUNNING again (gateway vs Prefect resume)", ours, bare),
                Row("approval → waiting run COMPLETED (gateway vs Prefect resume)", finished["ours (gateway)"],
                    finished["bare Prefect"])])


# ---------------------------------------------------------------- main


def benchmark(runs_per_kind: int, smoke: bool = False) -> None:
    started = time.monotonic()
    stack = Stack()
    try:
        server = stack.spawn("prefect-server", [sys.executable, "-m", "prefect", "server", "start",
                                                "--host", "127.0.0.1", "--port", str(PREFECT_PORT)])
        upgrade()
        with session() as db:
            approver = Person(name="Bea Benchmark", email="bea@bench.example")
            db.add(approver)
            db.flush()
            person_id = approver.id
        assert person_id is not None
        http = httpx.Client(timeout=30)
        _wait("the Prefect server", lambda: http.get(f"{API}/health").status_code == 200, 120, 0.3, server)
        stack.start_gateway()
        runner = stack.spawn(
            "runner", [sys.executable, "-c", "from benchmarks._latency_flows import serve; serve()"],
            env={**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": str(POLL_RUNNER_SECONDS),
                 "PREFECT_LOGGING_LEVEL": "INFO"},
        )
        for flow_name in (BASELINE_FLOW, OURS_FLOW):
            _wait(f"deployment {flow_name}/{DEPLOYMENT}",
                  partial(_deployment_registered, http, f"{flow_name}/{DEPLOYMENT}"), 120, 0.25, runner)

        baseline_ids = [str(runs.start(f"{BASELINE_FLOW}/{DEPLOYMENT}", run_name=f"baseline-{i}").id)
                        for i in range(runs_per_kind)]
        keys = [f"latency-{uuid.uuid4().hex[:12]}" for _ in range(runs_per_kind)]
        ours_ids = [str(runs.start(f"{OURS_FLOW}/{DEPLOYMENT}", {"key": key, "person_id": person_id},
                                   run_name=f"ours-{i}").id) for i, key in enumerate(keys)]
        _wait("every run to be suspended", lambda: _all_paused(http, baseline_ids + ours_ids),
              30 + 10 * runs_per_kind, 0.5, runner)
        setup = time.monotonic() - started
        print(f"{2 * runs_per_kind} runs suspended after {setup:.0f} s of setup; resuming them one at a time…",
              flush=True)

        # Ten runs just started and suspended: let their processes exit and the server write away the burst of
        # events they sent (its event persister flushes every 5 s) before the first clock starts.
        _settle(runner)
        time.sleep(0 if smoke else QUIET_SECONDS)
        server_log = WORK / "prefect-server.log"
        log_mark = len(server_log.read_text(errors="replace"))
        samples: list[Sample] = []
        for i in range(runs_per_kind):
            resumes: list[Callable[[], Sample]] = [
                partial(_resume_baseline, http, runner, baseline_ids[i]),
                partial(_resume_ours, http, runner, ours_ids[i], keys[i], person_id),
            ]
            for resume in resumes if i % 2 == 0 else reversed(resumes):  # neither kind always goes first
                samples.append(resume())
                _settle(runner)
            last_two = sorted(samples[-2:], key=lambda s: s.kind)
            print(f"  round {i + 1}: " + "; ".join(_describe(s) for s in last_two), flush=True)
        http.close()
        locked = server_log.read_text(errors="replace")[log_mark:].count(LOCKED)
        _report(samples, runs_per_kind, setup, time.monotonic() - started, locked)
    except BaseException:
        print(stack.tails(), file=sys.stderr)
        raise
    finally:
        stack.close()


def main() -> None:
    global POLL_RUNNER_SECONDS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="suspended runs of each kind to resume (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (server and runner logs)")
    parser.add_argument("--smoke", action="store_true", help="one run of each kind, no quiet period: seconds")
    parser.add_argument("--poll", type=int, default=POLL_RUNNER_SECONDS,
                        help="the runner's poll interval, whole seconds (default 1; `ops up` polls every "
                             "OPS_RESUME_POLL_SECONDS, 2 by default)")
    args = parser.parse_args()
    POLL_RUNNER_SECONDS = args.poll
    if args.smoke:
        args.runs = 1
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        with terminate_as_exit():
            benchmark(args.runs, smoke=args.smoke)
    finally:
        if args.keep:
            print(f"Logs and databases kept in {WORK}")
        else:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
