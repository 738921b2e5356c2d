"""The engine loop and its lease, on real registries (SQLite and PostgreSQL), a real SMTP server, real processes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterExpectedStartTime
from sqlmodel import select

from engine.deployments import PROJECT_ROOT
from engine.loop import LEASE, EngineLoop, Step, engine_loop
from registry import AuditEvent, lease, session
from registry.clock import utcnow
from tests import factories
from tests.conftest import Mailbox

ELSEWHERE = "another-machine:4026531836:4242:0badc0de"  # a holder on another machine: alive as far as we know


def _until(what: str, probe: Callable[[], Any], seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {seconds:.0f} s")
        time.sleep(0.05)
    return found


def _claim(holder: str, seconds: float = 60, **kwargs: Any) -> bool:
    with session() as db:
        return lease.claim(db, LEASE, holder, seconds, **kwargs)


def _holder() -> str | None:
    with session() as db:
        held = lease.holder_of(db, LEASE)
        return held.holder if held is not None else None


def test_one_holder_at_a_time_a_renewal_keeps_it_and_an_expired_lease_changes_hands(any_db: str) -> None:
    now = utcnow()
    assert _claim("a", 60, now=now), "nobody held it"
    assert not _claim("b", 60, now=now + timedelta(seconds=30)), "held by a until it expires"
    assert _claim("a", 60, now=now + timedelta(seconds=50)), "a renewal"
    assert not _claim("b", 60, now=now + timedelta(seconds=100)), "the renewal moved the expiry on"
    assert _claim("b", 60, now=now + timedelta(seconds=111)), "expired: anyone may take it"
    assert not _claim("a", 60, now=now + timedelta(seconds=112)) and _holder() == "b"
    assert _claim("c", 60, now=now + timedelta(seconds=113), replacing="b"), "b is known to be dead"
    with session() as db:
        assert not lease.release(db, LEASE, "b"), "only the holder gives it up"
        assert lease.release(db, LEASE, "c")
    assert _claim("d", 60), "given up: taken at once"


def test_of_concurrent_claims_exactly_one_wins(any_db: str) -> None:
    holders = [f"holder-{i}" for i in range(6)]
    won: dict[str, bool] = {}
    start = threading.Barrier(len(holders))

    def claim(holder: str) -> None:
        start.wait()
        won[holder] = _claim(holder)

    threads = [threading.Thread(target=claim, args=(h,)) for h in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(won.values()) == 1, won
    assert _holder() == next(h for h, got in won.items() if got)


def _counting(name: str, every: float = 0.05) -> tuple[Step, list[float]]:
    calls: list[float] = []
    return Step(name, every, lambda: calls.append(time.monotonic())), calls


def test_a_loop_without_the_lease_does_nothing_until_the_holder_stops_renewing(any_db: str) -> None:
    assert _claim(ELSEWHERE, 2)
    step, calls = _counting("work")
    loop = EngineLoop([step], lease_seconds=30)
    assert loop.tick() == [] and calls == [], "another machine's loop holds the lease"
    _until("the take-over of an expired lease", loop.tick, 30)
    assert len(calls) == 1 and _holder() == loop.holder
    assert not _claim(ELSEWHERE, 2), "the other machine, back, finds it held"
    loop.release()
    assert _holder() == loop.holder and _claim(ELSEWHERE, 2), "released: free at once"


def test_two_loops_in_one_registry_never_work_at_once(registry_db: str) -> None:
    first_step, first = _counting("first")
    second_step, second = _counting("second")
    with engine_loop(steps=[first_step], lease_seconds=30) as staying:
        with engine_loop(steps=[second_step], lease_seconds=30) as stopping:
            _until("a loop at work", lambda: len(first) + len(second) >= 10)
            both = (len(first), len(second))
        assert 0 in both, both
        if stopping.holding or second:  # the one that stops gives the lease up: the other takes over at once
            _until("the take-over by the loop still running", lambda: staying.holding and first, 10)


def test_a_step_that_raises_is_logged_without_its_secrets_and_the_loop_goes_on(
        registry_db: str, caplog: pytest.LogCaptureFixture) -> None:
    failures: list[float] = []

    def fail() -> None:
        failures.append(time.monotonic())
        raise ConnectionError("could not reach postgresql://ops:s3cret-pass@db.internal/ops")

    after, calls = _counting("after")
    with caplog.at_level(logging.ERROR, logger="engine.loop"), \
            engine_loop(steps=[Step("failing", 0.05, fail), after], lease_seconds=30) as loop:
        _until("the failing step retried and the next step still run", lambda: len(failures) >= 3 and len(calls) >= 3)
    assert loop.errors >= 3
    assert "failing failed" in caplog.text and "ConnectionError" in caplog.text
    assert "s3cret-pass" not in caplog.text and "postgresql://ops:…@db.internal" in caplog.text


def test_a_loop_started_late_does_the_missed_sweep_once_and_leaves_no_flow_run(
        smtp: Mailbox, prefect_api: str) -> None:
    """A stack that was down while a step fell overdue escalates it at its first sweep, once, as a function call."""
    began = utcnow()
    with session() as db:
        manager = factories.person(db, "Maya Manager")
        asked = factories.person(db, "Olly Owner", manager=manager)
        step = factories.step(db, asked, title="Approve the supplier change", due=began - timedelta(hours=3),
                              expires=began + timedelta(days=2))
        step_id, manager_email = step.id, manager.email
    with engine_loop(sweep_seconds=0.2, dispatch_seconds=0.2, retention_seconds=0.2) as loop:
        smtp.wait_for(1, to=manager_email, seconds=60)
        ticks = loop.steps[0].last
        _until("more sweeps", lambda: loop.steps[0].last != ticks and loop.steps[0].last, 30)
        time.sleep(0.5)  # several more sweeps: none escalates again
    assert len(smtp.messages(to=manager_email)) == 1 and loop.errors == 0
    with session() as db:
        events = db.exec(select(AuditEvent).where(AuditEvent.entity_id == step_id,
                                                  AuditEvent.action == "step.escalated")).all()
    assert len(events) == 1
    with get_client(sync_client=True) as client:
        as_runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["deadline-sweep", "emergency-drill-dispatch"])),
            flow_run_filter=FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(after_=began)))
    assert as_runs == [], "the loop's work appeared in the run list"


_HOLD = """
import sys, time
from engine.loop import Step, engine_loop
with engine_loop(steps=[Step("beat", 0.1, lambda: open(sys.argv[1], "a").write("."))], lease_seconds=600):
    time.sleep(600)
"""


def test_a_killed_holder_on_this_machine_is_replaced_at_once_not_after_its_lease(
        registry_db: str, tmp_path: Path) -> None:
    beats = tmp_path / "beats"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(beats)], cwd=PROJECT_ROOT, env=dict(os.environ),
                              start_new_session=True)
    try:
        _until("the other process at work", lambda: beats.exists() and len(beats.read_text()) >= 2)
        step, calls = _counting("work")
        loop = EngineLoop([step], lease_seconds=30)
        assert loop.tick() == [] and str(holder.pid) in (_holder() or ""), "a live holder keeps its lease"
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        assert loop.tick() == ["work"] and calls, "its pid is gone: no need to wait ten minutes"
        assert _holder() == loop.holder
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
