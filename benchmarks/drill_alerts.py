"""A drill for a whole site: from "start" to every participant's alert accepted by the mail server.

    .venv/bin/python benchmarks/drill_alerts.py [--people 1000] [--smoke] [--apprise] [--profile FILE] [--part N]

A throw-away SQLite registry gets one facility with `--people` on its roster (two of them wardens) and a loopback
SMTP server (the mail catcher the local stack runs) in a process of its own, so neither side shares its GIL with
the server. Timed, in one run, against the same server:

- ours: the drill's own step, called as its flow calls it: open the drill (a drill row and its occasion, one
  human step, one participant row and one queued alert per person, the trail event) a part of the roster at a
  time, each part its own unit of work whose alerts a delivery thread sends (render each, mint each link, send,
  each outcome committed as its server accepts it) while the next part is asked. Reported whole and for the
  delivery alone (every `notify.deliver_due`: claim, render, mint, send, record); `--part 0` opens the whole
  roster in one unit and delivers after it, to compare;
- the baseline: the same messages (the drill's, as the server stored them) pre-built, through `smtplib` over one
  session;

The catcher says PIPELINING (RFC 2920), as real mail servers do: ours then sends each envelope (MAIL, RCPT,
DATA) in one write, and the next message's while it commits this one's outcome; smtplib's `sendmail` never
pipelines (it waits for each reply, four round trips a message), so the baseline neither gains nor loses by it.
- with `--apprise`, also one Apprise `notify` per message (a new SMTP session and TLS context each; slow).

Rates are messages per second, medians of `--rounds` rounds (drill, then the baseline on the messages it sent);
the ratio is ours over the baseline (the issue wants ≥ 0.90), each round's own ratio after it.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.mkdtemp(prefix="ops-drill-bench-"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


PORT = _free_port()
MAIL_URL = f"mailto://127.0.0.1:{PORT}?from=ops%40bench.example&mode=insecure"
os.environ.update({"PREFECT_HOME": str(WORK / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                   "OPS_DATA_DIR": str(WORK / "data"), "OPS_MAIL_URL": MAIL_URL})
sys.path.insert(0, str(PROJECT_ROOT))

import apprise  # noqa: E402

from benchmarks._table import Row, print_rows  # noqa: E402
from engine import notify  # noqa: E402
from engine.settings import get_settings  # noqa: E402
from flows.continuity.drill import tasks as drill_tasks  # noqa: E402
from flows.continuity.drill.flow import DrillParameters  # noqa: E402
from flows.continuity.drill.tasks import open_drill  # noqa: E402
from registry import Facility, Person, RosterEntry, RosterRole, session  # noqa: E402
from registry.migrate import upgrade  # noqa: E402

# The catcher runs until its stdin closes, so it cannot outlive the benchmark.
_CATCHER = """
import sys
from pathlib import Path
from engine import mailcatcher
controller = mailcatcher.start(Path(sys.argv[1]), "127.0.0.1", int(sys.argv[2]))
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"""


def _start_catcher(mailbox: Path) -> subprocess.Popen[str]:
    catcher = subprocess.Popen([sys.executable, "-c", _CATCHER, str(mailbox), str(PORT)], cwd=PROJECT_ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert catcher.stdout is not None and catcher.stdout.readline().strip() == "ready"
    return catcher


def _site(people: int) -> None:
    upgrade()
    with session() as db:
        site = Facility(code="SITE", name="Bench site", address="1 Bench Road")
        db.add(site)
        db.flush()
        persons = [Person(name=f"Person {i}", email=f"person{i}@bench.example") for i in range(people)]
        db.add_all(persons)
        db.flush()
        db.add_all(RosterEntry(facility_id=site.id or 0, person_id=p.id or 0, area=f"Floor {i % 5}",
                               role=RosterRole.warden if i < 2 else RosterRole.occupant)
                   for i, p in enumerate(persons))


def _caught() -> int:
    return len(list((get_settings().mailbox_dir / "new").iterdir()))


def _prebuilt(stored: bytes) -> tuple[str, bytes]:
    """A caught message as it was sent: its recipient and its bytes without the catcher's envelope header."""
    message = message_from_bytes(stored, policy=policy.SMTP)
    del message["X-Envelope-To"]
    return str(message["To"]).rsplit("<", 1)[-1].rstrip(">"), message.as_bytes()


def _clear(mailbox: Path) -> None:
    for path in (mailbox / "new").iterdir():
        path.unlink()


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="drill then baseline, this many times (medians)")
    parser.add_argument("--smoke", action="store_true", help="20 people, one round: seconds, to prove it runs")
    parser.add_argument("--apprise", action="store_true", help="also time one Apprise notify per message")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the drill's steps (first round) here, "
                                                     "and of its deliveries beside it (FILE.delivery.prof)")
    parser.add_argument("--part", type=int, help="people per unit of work while opening (default: the drill's "
                                                 "own; 0: the whole roster in one, delivered after it)")
    args = parser.parse_args()
    if args.part is not None:
        drill_tasks._PART = args.part or sys.maxsize
    n, rounds = (20, 1) if args.smoke else (args.people, args.rounds)
    mailbox = get_settings().mailbox_dir
    for sub in ("tmp", "new", "cur"):
        (mailbox / sub).mkdir(parents=True, exist_ok=True)
    catcher = _start_catcher(mailbox)
    delivering: list[tuple[float, float, float]] = []  # (start, seconds, CPU seconds of the delivering thread)
    deliver_due = notify.deliver_due
    delivery_profile: cProfile.Profile | None = None

    def timed_deliver_due(**kwargs: object) -> notify.DeliveryReport:
        # The drill hands each part of its roster to a delivery thread as it commits: thread CPU, not the process's.
        began, used = time.perf_counter(), time.thread_time()
        if delivery_profile is not None:  # a profiler sees only its own thread: the delivery's has one of its own
            delivery_profile.enable()
        try:
            return deliver_due(**kwargs)  # type: ignore[arg-type]
        finally:
            if delivery_profile is not None:
                delivery_profile.disable()
            delivering.append((began, time.perf_counter() - began, time.thread_time() - used))

    ours: list[dict[str, float]] = []
    floors: list[tuple[float, float]] = []
    per_message = None
    try:
        _site(n)
        with session() as db:
            first = db.get(Person, 1)
            assert first is not None
            email = first.email
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "ops@bench.example", email, "DRILL: Fire evacuation"
        message.set_content("Are you accounted for?")
        message.add_alternative("<p>Are you accounted for?</p>", subtype="html")
        raw = message.as_bytes()
        with smtplib.SMTP("127.0.0.1", PORT) as smtp:  # warm the catcher's first-connection costs for both
            smtp.sendmail("ops@bench.example", [email], raw)

        for round_number in range(rounds):
            _clear(mailbox)
            profiler = cProfile.Profile() if args.profile and round_number == 0 else None
            delivery_profile = cProfile.Profile() if profiler else None
            notify.deliver_due = timed_deliver_due  # type: ignore[assignment]
            try:
                if profiler:
                    profiler.enable()
                began = time.perf_counter()
                sent = open_drill.fn(DrillParameters(facility="SITE", window_minutes=20)).participants
                whole = time.perf_counter() - began
                if profiler:
                    profiler.disable()
                    profiler.dump_stats(args.profile)
                    assert delivery_profile is not None
                    delivery_profile.dump_stats(args.profile.with_suffix(".delivery" + args.profile.suffix))
            finally:
                notify.deliver_due = deliver_due  # type: ignore[assignment]
            assert sent == n == _caught(), (sent, _caught())
            first_alert = min(start for start, _, _ in delivering) - began
            delivered, cpu = sum(d for _, d, _ in delivering), sum(c for _, _, c in delivering)
            delivering.clear()
            ours.append({"opened": first_alert, "whole": whole, "delivered": delivered, "cpu": cpu})

            # The baseline sends the very messages the drill sent (as the catcher stored them), pre-built: the
            # same bytes for the server to parse and store, so the difference is the sending side alone.
            prebuilt = [_prebuilt(path.read_bytes()) for path in (mailbox / "new").iterdir()]
            _clear(mailbox)
            began, used = time.perf_counter(), time.process_time()
            with smtplib.SMTP("127.0.0.1", PORT) as smtp:
                for to, data in prebuilt:
                    smtp.sendmail("ops@bench.example", [to], data)
            floors.append((time.perf_counter() - began, time.process_time() - used))
            assert _caught() == n

        if args.apprise:
            _clear(mailbox)
            began = time.perf_counter()
            for i in range(n):
                # A fresh instance per message, as a per-message send is written: one reused instance would also
                # wait out Apprise's per-plugin throttle (5.5 s between notifications).
                notifier = apprise.Apprise()
                notifier.add(f"{MAIL_URL}&to={email}")
                assert notifier.notify(title=f"DRILL: Fire evacuation ({i})", body="<p>Are you accounted for?</p>",
                                       body_format=apprise.NotifyFormat.HTML)
            per_message = time.perf_counter() - began
            assert _caught() == n
    finally:
        assert catcher.stdin is not None
        catcher.stdin.close()
        catcher.wait(10)
        shutil.rmtree(WORK, ignore_errors=True)

    floor_rate = n / _median([f for f, _ in floors])

    def row(figure: str, ours_seconds: list[float]) -> Row:
        # Load on a shared machine moves both sides between rounds: each round's own ratio is shown too.
        ratios = [floor / mine for mine, (floor, _) in zip(ours_seconds, floors, strict=True)]
        return Row(figure, round(n / _median(ours_seconds)), round(floor_rate), "msg/s",
                   f"target ≥ 0.90; rounds {', '.join(f'{r:.2f}' for r in ratios)}")

    print(f"# drill alerts: {n} people on one site's roster, SQLite registry, SMTP catcher on loopback in its own "
          f"process; msg/s, median of {rounds} round(s); baseline: the same messages pre-built, smtplib over one "
          "session")
    for number, (mine, (floor, floor_cpu)) in enumerate(zip(ours, floors, strict=True), start=1):
        print(f"# round {number}: first alerts handed to delivery after {mine['opened']:.2f} s (the rest of the "
              f"roster asked meanwhile), delivering {mine['delivered']:.2f} s in all "
              f"({mine['cpu']:.2f} s CPU in its thread), start to last {mine['whole']:.2f} s; "
              f"smtplib {floor:.2f} s ({floor_cpu:.2f} s CPU)")
    rows = [row("drill alerts, start to last accepted", [m["whole"] for m in ours]),
            row("drill alerts, delivery only", [m["delivered"] for m in ours])]
    if per_message is not None:
        rows.append(Row("Apprise, one notify per message", round(n / per_message), round(floor_rate), "msg/s"))
    print_rows(rows)


if __name__ == "__main__":
    main()
