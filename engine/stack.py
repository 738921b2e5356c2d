"""The embedded local stack `ops up` starts: Prefect server (on its PostgreSQL), deployments, link gateway, mail
catcher — watched while it runs, recorded so that what a killed stack left behind is found and stopped."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

# httpx is imported where it is used: `ops up` starts the Prefect server first, before anything it does not need.
from engine import prefect_postgres
from engine.settings import Settings
from engine.stack_record import StackProcess, StackRecord, command_line, port_in_use
from engine.stack_record import stop as stop_recorded


def local_environment(settings: Settings) -> dict[str, str]:
    """Variables every process of the local stack shares; Prefect reads its own only at import."""
    data = settings.data_dir.resolve()
    return {
        "OPS_DATA_DIR": str(data),
        "PREFECT_HOME": str(data / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{settings.prefect_port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(settings.prefect_port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": str(max(1, int(settings.resume_poll_seconds))),
        # Idle CPU (benchmarks/idle_cpu.py: 12% of a core before issue 13). The Prefect server's own loops default
        # to every 5-20 s; each costs a few database round trips. Every 60 s is plenty for what they do here:
        # the "Late" label on a run past its start (nothing waits on it; our schedules are daily or quarterly),
        "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "60",
        # failing a paused run past its timeout (a gate's timeout is hours or days, and the sweep expires steps),
        "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS": "60",
        # scheduling runs of a deployment just registered (its schedules are daily or quarterly),
        "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "60",
        # marking silent workers offline (`ops serve` is a runner, not a worker; `ops up` watches it itself),
        "PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": "60",
        # freeing a concurrency slot a dead run still held (one sweep or dispatch at a time: a minute late),
        "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "60",
        # expired cleanup leases, and the children of a cancelled run (housekeeping nobody waits for).
        "PREFECT_SERVER_SERVICES_CLEANUP_RECONCILER_LOOP_SECONDS": "60",
        "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_LOOP_SECONDS": "60",
        # proactive automations ("no event within an hour"), every 30 s not 5 (engine/prefect_server.py).
        "PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT30S",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_LOGGING_LEVEL": "INFO",
        # Flows run in processes of their own: they must mail the catcher on whichever port it listens.
        "OPS_MAIL_URL": f"mailto://{settings.smtp_host}:{settings.smtp_port}?from=opsdirector%40localhost&mode=insecure",
    }


_OWNED_BY_THE_STACK = ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_SERVER_API_HOST", "PREFECT_SERVER_API_PORT")


def apply_local_environment(settings: Settings, *, own_server: bool = False) -> None:
    """Fill in what is not set; with `own_server` (ops up) the stack's own Prefect server always wins."""
    for key, value in local_environment(settings).items():
        if own_server and key in _OWNED_BY_THE_STACK:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)


def wait_until_up(url: str, seconds: float, process: subprocess.Popen[bytes] | None = None,
                  interval: float = 0.1) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    # One client for every probe: each new one builds an SSL context (~15 ms of CPU the server starting needs).
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the process serving {url} exited with code {process.returncode}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(interval)
    raise RuntimeError(f"{url} did not come up within {seconds:.0f} s")


# `ops serve` restarted this often within the window is crashing, not dying by accident: stop instead of looping.
_RESTARTS_ALLOWED = 5
_RESTART_WINDOW_SECONDS = 60.0
_WATCH_SECONDS = 0.5
# Tells `ops serve` which `ops up` it belongs to, so it ends itself (and its flow runs) if that one is killed.
STACK_PID_VARIABLE = "OPS_STACK_PID"
# Where `ops serve` writes its pid once every deployment is registered: "up" waits for it.
SERVE_READY_VARIABLE = "OPS_SERVE_READY_FILE"
# Where `ops up` writes its pid once the registry is migrated and seeded: `ops serve` reads the Run forms' dropdown
# values (engine.choices), which its deployments' versions hash, only then; before, a first start registered the
# forms of a registry half seeded, and the second start registered every deployment again.
REGISTRY_READY_VARIABLE = "OPS_REGISTRY_READY_FILE"


def _write_whole(path: Path, text: str) -> None:
    """`text` in `path`, whole or not at all (another process polls for it)."""
    partial = path.with_name(f"{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)


def mark_ready(path: Path) -> None:
    """Write this process's pid to `path`, whole or not at all (a reader polls for it)."""
    _write_whole(path, str(os.getpid()))


def is_marked(path: Path, pid: int | str) -> bool:
    """Whether process `pid` has marked `path` ready (mark_ready): a file another process left says no."""
    try:
        return path.read_text().strip() == str(pid)
    except FileNotFoundError:
        return False


def note_choices(ready_file: Path, known: dict[str, list[str]]) -> None:
    """Beside `ops up`'s registry-ready mark, the forms' dropdown values it read once the registry was seeded."""
    _write_whole(_choices_file(ready_file), json.dumps(known))


def noted_choices(ready_file: Path) -> dict[str, list[str]] | None:
    """What note_choices wrote for this mark, or None (then `ops serve` reads them from the registry itself)."""
    try:
        known = json.loads(_choices_file(ready_file).read_text())
    except (OSError, ValueError):
        return None
    return known if isinstance(known, dict) else None


def _choices_file(ready_file: Path) -> Path:
    return ready_file.with_name(f"{ready_file.name}.choices.json")


def wait_until_marked(path: Path, pid: str, seconds: float) -> None:
    """Until `path` holds `pid` (mark_ready by that process); a RuntimeError after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if is_marked(path, pid):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{path} did not name process {pid} within {seconds:.0f} s")


def _ports(settings: Settings) -> list[tuple[str, str, int, str]]:
    ports = [("Prefect server", "127.0.0.1", settings.prefect_port, "OPS_PREFECT_PORT"),
             ("link gateway", settings.gateway_host, settings.gateway_port, "OPS_GATEWAY_PORT")]
    if settings.catches_mail:
        ports.append(("mail catcher", settings.smtp_host, settings.smtp_port, "OPS_SMTP_PORT"))
    return ports


def leftovers(settings: Settings) -> str | None:
    """Why `ops up` must not start here, or None: a live stack (or what a killed one left) or a port taken."""
    alive = StackRecord(settings.data_dir.resolve()).alive()
    if alive:
        return ("opsdirector is already running here, or a stack that was killed left these behind "
                f"(data dir {settings.data_dir.resolve()}):\n"
                + "".join(f"  {process.describe()}\n" for process in alive)
                + f"Stop them with `ops down` (or kill {' '.join(str(p.pid) for p in alive)}), then start again.")
    taken = [(what, port, variable) for what, host, port, variable in _ports(settings) if port_in_use(host, port)]
    if taken:
        return "".join(f"port {port} ({what}) is in use by another program: stop it, or choose another port "
                       f"with {variable}.\n" for what, port, variable in taken).rstrip("\n")
    return None


def down(settings: Settings) -> list[StackProcess]:
    """Stop whatever the last stack in this data dir started and still runs; returns what was stopped."""
    record = StackRecord(settings.data_dir.resolve())
    alive = record.alive()
    stop_recorded(alive)
    record.clear()
    return alive


class _Children:
    """The processes `ops up` started: each in a session of its own, recorded, and set to die with `ops up`."""

    def __init__(self, record: StackRecord, logs: Path, serve_ready_file: Path, registry_ready_file: Path) -> None:
        self.record = record
        self.logs = logs
        self.serve_ready_file = serve_ready_file
        self.registry_ready_file = registry_ready_file
        self.running: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        # Groups of an `ops serve` that died: their flow runs may still be finishing and are stopped at the end.
        self.orphan_groups: list[int] = []

    def spawn(self, what: str, args: list[str], log_name: str, *, stop_signal: int = signal.SIGTERM,
              death_signal: int | None = None, user: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / log_name).open("ab") as handle:
            # Through die_with_parent, so a kill -9 of `ops up` does not leave this running; a session of its own,
            # so stopping it stops everything it started.
            process = subprocess.Popen(
                [sys.executable, "-m", "engine.die_with_parent", str(os.getpid()),
                 str(int(stop_signal if death_signal is None else death_signal)), user or "-", *args],
                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, env=env,
            )
        self.running[what] = (process, stop_signal)
        self.record.add(StackProcess(pid=process.pid, what=what, cmdline=args, stop_signal=int(stop_signal)))
        return process

    def stop_all(self) -> None:
        for process, stop_signal in reversed(list(self.running.values())):
            stop_process_group(process, sig=stop_signal)
        for group in self.orphan_groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 10, sig: int = signal.SIGTERM) -> None:
    """Send `sig` (SIGTERM) to the process's whole group, SIGKILL it after `grace` seconds."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass


def own_server(settings: Settings) -> str:
    """What names the Prefect server `ops up` starts from one start to the next, whatever port it is given: its
    database (a configured URL by its hash, which may hold a password)."""
    if url := settings.prefect_database_url:
        return f"ops up's Prefect server on database {hashlib.sha256(url.encode()).hexdigest()[:16]}"
    return f"ops up's Prefect server on {settings.prefect_home.resolve() / 'postgres'}"


def _start_prefect_server(settings: Settings, children: _Children) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    database = None
    pgdata = settings.prefect_home.resolve() / "postgres"
    if settings.prefect_database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = settings.prefect_database_url
    else:
        prefect_postgres.prepare(pgdata)
        database = children.spawn("PostgreSQL (the Prefect server's database)", prefect_postgres.command(pgdata),
                                  "prefect-postgres.log", stop_signal=signal.SIGINT,
                                  user=prefect_postgres.system_user())
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = prefect_postgres.connection_url(pgdata)
        env[prefect_postgres.STARTED_VARIABLE] = f"{database.pid}:{pgdata}"
    # `prefect server start` with docket's idle polling slowed (engine/prefect_server.py says why).
    server = children.spawn("Prefect server", [sys.executable, "-m", "engine.prefect_server", "--host",
                                               "127.0.0.1", "--port", str(settings.prefect_port)],
                            "prefect-server.log", env=env)
    if database is not None:  # a database that does not start is said as such, not as the server's exit
        prefect_postgres.wait_until_ready(pgdata, 30, database)
    return server


def _wait_for_deployments(api: str, seconds: float, children: _Children) -> None:
    """Until the running `ops serve` says every deployment is registered (its runner polls right after), and the
    API lists each of them."""
    import httpx

    from engine.deployments import specs

    wanted = {spec.name for spec in specs()}
    deadline = time.monotonic() + seconds
    # One client for every check (each new one builds an SSL context: CPU the server, just up, needs).
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            for what, (process, _) in children.running.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{what} exited with code {process.returncode}; see {children.logs}")
            if is_marked(children.serve_ready_file, children.running["ops serve"][0].pid):
                try:
                    response = client.post(f"{api}/deployments/filter",
                                           json={"deployments": {"name": {"any_": sorted(wanted)}}})
                    if response.status_code == 200 and {d["name"] for d in response.json()} >= wanted:
                        return
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    pass
            time.sleep(0.02)
    raise RuntimeError(f"the deployments were not registered within {seconds:.0f} s; see {children.logs}")


def _spawn_serve(children: _Children) -> subprocess.Popen[bytes]:
    """`ops serve`, stopped with SIGKILL to its group, its flow runs with it, never gracefully.

    Prefect's graceful stop cancels the runs in flight, and a cancelled run is one a person stopped: nothing takes
    it over. Killed, a run stays RUNNING with its process gone, and the sweep of the next stack finishes it. For the
    same reason it gets no parent-death signal (that would kill it alone): it watches `ops up` itself and kills its
    group the moment `ops up` is gone (engine.die_with_parent.kill_group_when_orphaned).
    """
    return children.spawn("ops serve", [sys.executable, "-m", "engine.cli", "serve"], "deployments.log",
                          stop_signal=signal.SIGKILL, death_signal=0,
                          env={**os.environ, STACK_PID_VARIABLE: str(os.getpid()),
                               SERVE_READY_VARIABLE: str(children.serve_ready_file),
                               REGISTRY_READY_VARIABLE: str(children.registry_ready_file)})


def _stop_on_signal(stopping: threading.Event) -> None:
    """Ctrl-C and SIGTERM (`ops down`) end the watch loop, which then stops everything in order."""
    def handle(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def _watch(children: _Children, gateway_thread: threading.Thread,
           stopping: threading.Event) -> int:
    """Until told to stop: restart a dead `ops serve`; a dead server, database or gateway stops the stack (1)."""
    restarts: list[float] = []
    while not stopping.wait(_WATCH_SECONDS):
        for what, (process, _) in list(children.running.items()):
            code = process.poll()
            if code is None:
                continue
            log = children.logs / ("deployments.log" if what == "ops serve" else "prefect-server.log")
            if what != "ops serve":
                print(f"{what} exited (code {code}); see {children.logs}. Stopping opsdirector.", flush=True)
                return 1
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < _RESTART_WINDOW_SECONDS] + [now]
            if len(restarts) > _RESTARTS_ALLOWED:
                print(f"ops serve exited (code {code}) {len(restarts)} times within "
                      f"{_RESTART_WINDOW_SECONDS:.0f} s; see {log}. Stopping opsdirector.", flush=True)
                return 1
            children.orphan_groups.append(process.pid)
            again = _spawn_serve(children)
            print(f"ops serve exited (code {code}); restarted it (pid {again.pid}, log {log}).", flush=True)
        if not gateway_thread.is_alive():
            print("the link gateway stopped; stopping opsdirector.", flush=True)
            return 1
    return 0


def run(settings: Settings, prepare: Callable[[], None] | None = None) -> int:
    """Start everything, print where it is, watch it, and stop all of it on Ctrl-C or SIGTERM.

    The Prefect server is started first, because it is the slowest part (its import alone takes seconds): `ops
    serve`, our own imports, the mail catcher, `prepare` (the registry's migrations and demo data) and the link
    gateway all start while it does. Returns the exit code: 0 after Ctrl-C or `ops down`, 1 when a part died and
    could not be brought back.
    """
    apply_local_environment(settings, own_server=True)
    data = settings.data_dir.resolve()
    # Before anything imports Prefect: it creates PREFECT_HOME at import, but not the directories above it.
    settings.prefect_home.resolve().mkdir(parents=True, exist_ok=True)

    record = StackRecord(data)
    children = _Children(record, data / "logs", settings.prefect_home.resolve() / "serving",
                         settings.prefect_home.resolve() / "registry-ready")
    stopping = threading.Event()
    _stop_on_signal(stopping)
    started = time.monotonic()
    record.add(StackProcess(pid=os.getpid(), what="ops up", cmdline=command_line(os.getpid()) or sys.argv))
    catcher = None
    gateway = None
    gateway_thread: threading.Thread | None = None
    loading: threading.Thread | None = None
    code = 1
    try:
        server = _start_prefect_server(settings, children)
        children.serve_ready_file.unlink(missing_ok=True)
        children.registry_ready_file.unlink(missing_ok=True)
        _choices_file(children.registry_ready_file).unlink(missing_ok=True)
        _spawn_serve(children)

        from engine import mailcatcher

        if settings.catches_mail:
            catcher = mailcatcher.start(settings.mailbox_dir.resolve(), settings.smtp_host, settings.smtp_port)
        if prepare is not None:
            prepare()
        from engine.choices import choices

        # `ops serve` hashes them into the deployments' versions: read here, where the registry is imported
        # already, it need not import it (half a second of CPU) while the Prefect server starts.
        note_choices(children.registry_ready_file, choices())
        mark_ready(children.registry_ready_file)

        import uvicorn

        from engine.gateway import create_app, load_prefect_client

        config = uvicorn.Config(create_app(load_prefect_client_at_start=False), host=settings.gateway_host,
                                port=settings.gateway_port, log_level="warning")
        gateway = uvicorn.Server(config)
        # In a thread: the main thread watches the children (and is the parent their death signal follows).
        gateway_thread = threading.Thread(target=gateway.run, name="gateway", daemon=True)
        gateway_thread.start()
        wait_until_up(f"{settings.gateway_url.rstrip('/')}/healthz", 30)
        api = f"http://127.0.0.1:{settings.prefect_port}/api"
        wait_until_up(f"{api}/health", 120, server, interval=0.05)
        # "up" means a Run (the UI's button, `ops run`) works: every deployment is registered by this `ops serve`.
        _wait_for_deployments(api, 120, children)
        lines = [f"opsdirector is up ({time.monotonic() - started:.1f} s)",
                 f"  Prefect UI      http://127.0.0.1:{settings.prefect_port}",
                 f"  Link gateway    {settings.gateway_url}"]
        if settings.catches_mail:
            lines += [f"  Inbox           {settings.gateway_url.rstrip('/')}/inbox",
                      f"  Mail (SMTP)     {settings.smtp_host}:{settings.smtp_port}"]
        lines += [f"  Data and logs   {data}",
                  "Try the quarterly audit end to end: .venv/bin/ops demo (in another terminal);",
                  "a fire drill at the head office: .venv/bin/ops demo drill.",
                  "Press Ctrl-C (or run `ops down`) to stop everything."]
        print("\n".join(lines), flush=True)
        # For the gateway's first resume; only now, not to slow the Prefect server's start.
        loading = load_prefect_client()
        code = _watch(children, gateway_thread, stopping)
    except (RuntimeError, OSError) as error:
        print(f"opsdirector could not start: {error!r}", flush=True)
    except KeyboardInterrupt:
        code = 0
    finally:
        if gateway is not None and gateway_thread is not None:
            gateway.should_exit = True
            gateway_thread.join(timeout=10)
        children.stop_all()
        if catcher is not None:
            catcher.stop()
        record.clear()
        if loading is not None:
            loading.join(timeout=30)
        print("opsdirector stopped.", flush=True)
    return code
