"""A serving process is woken by Prefect's event stream when a run becomes Scheduled, not only by its poll."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow

from engine.run_wake import wake_on_scheduled_runs
from tests.flows.conftest import start_serving

WAKE_SECONDS = 30  # the event itself takes well under a second; a loaded CI machine is slower


@flow(name=f"wake-{uuid.uuid4().hex[:8]}")
def _nothing() -> None:
    """Never run: its runs are only moved from state to state."""


async def _woken_within(woken: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(woken.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def _quiet(woken: asyncio.Event) -> None:
    """Until no poll has been woken for longer than the follow-up polls' interval."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        woken.clear()
        if not await _woken_within(woken, 2.5):
            return
    raise AssertionError("the poll never went quiet")


def test_a_run_becoming_scheduled_wakes_the_poll_and_other_states_do_not(prefect_api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Pending, Running, Scheduled

    async def scenario() -> list[str]:
        seen: list[str] = []
        woken = asyncio.Event()
        async with get_client() as client:
            async def poll() -> None:
                seen.append("poll")

            waking = asyncio.create_task(wake_on_scheduled_runs(poll, woken=woken))
            try:
                await _quiet(woken)  # subscribed; the minute's replay of other tests' runs may wake it first
                run = await client.create_flow_run(_nothing, state=Pending())
                await client.set_flow_run_state(run.id, Running(), force=True)
                assert not await _woken_within(woken, 3), "a run that is not Scheduled woke the poll"
                seen.clear()
                started = time.monotonic()
                await client.set_flow_run_state(run.id, Scheduled(), force=True)
                assert await _woken_within(woken, WAKE_SECONDS), "a run becoming Scheduled did not wake the poll"
                seen.append(f"{time.monotonic() - started:.2f}")
            finally:
                waking.cancel()
        return seen

    seen = asyncio.run(scenario())
    assert seen[0] == "poll", seen


def test_after_an_event_it_polls_again_for_a_while_as_a_resumed_run_may_not_be_startable_yet(
        prefect_api: str) -> None:
    """An approval can resume a run before its suspending process has exited; the runner skips it until then. One
    event therefore gets follow-up polls (about one a second for ten seconds), not a single one."""
    from prefect.client.orchestration import get_client
    from prefect.states import Pending, Scheduled

    async def scenario() -> list[float]:
        polls: list[float] = []
        woken = asyncio.Event()

        async def poll() -> None:
            polls.append(time.monotonic())

        async with get_client() as client:
            waking = asyncio.create_task(wake_on_scheduled_runs(poll, woken=woken))
            try:
                await _quiet(woken)
                run = await client.create_flow_run(_nothing, state=Pending())
                polls.clear()
                await client.set_flow_run_state(run.id, Scheduled(), force=True)
                assert await _woken_within(woken, WAKE_SECONDS)
                await asyncio.sleep(4)
            finally:
                waking.cancel()
        return polls

    polls = asyncio.run(scenario())
    assert len(polls) >= 3, f"{len(polls)} poll(s) in the 4 s after one event"


def test_an_unreachable_event_stream_is_retried_and_raises_nothing() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    polls: list[float] = []

    async def scenario() -> bool:
        async def poll() -> None:
            polls.append(time.monotonic())

        waking = asyncio.create_task(wake_on_scheduled_runs(poll, retry_seconds=0.2))
        await asyncio.sleep(2)
        alive = not waking.done()
        waking.cancel()
        return alive

    # Settings, not the environment: the session's Prefect test server is a settings context that would win.
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{closed_port}/api"}):
        alive = asyncio.run(scenario())
    assert alive, "the wake task ended (it must keep retrying while the server is away)"
    assert polls == [], "a poll was woken with no event stream"


def _created_run(api: httpx.Client, deployment_id: str) -> dict[str, Any]:
    """A Run of the deployment, as Prefect's own client makes it: a 503 or 429 (the shared test server busy
    elsewhere) asked again, anything else not a run said as such."""
    for _ in range(5):
        response = api.post(f"/deployments/{deployment_id}/create_flow_run", json={})
        if response.status_code not in (429, 503):
            break
        time.sleep(2)
    assert response.status_code == 201, f"creating the run: {response.status_code} {response.text}"
    return dict(response.json())


def test_ops_serve_starts_a_run_long_before_its_poll_would(prefect_api: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With a ten-minute poll, a Run of a deployment is picked up in seconds: the event woke `ops serve`."""
    monkeypatch.setenv("OPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPS_DATABASE_URL", f"sqlite:///{tmp_path / 'registry.db'}")
    served = start_serving(prefect_api, tmp_path / "serve.log", extra_env={"OPS_RESUME_POLL_SECONDS": "600"})
    try:
        with httpx.Client(base_url=prefect_api, timeout=30) as api:
            deployment = api.get("/deployments/name/deadline-sweep/deadline-sweep").json()
            time.sleep(3)  # the runner's first poll, at start, is behind it
            run = _created_run(api, deployment["id"])
            started = time.monotonic()
            state = "SCHEDULED"
            while state == "SCHEDULED" and time.monotonic() - started < 120:
                time.sleep(0.2)
                state = api.get(f"/flow_runs/{run['id']}").json()["state"]["type"]
            waited = time.monotonic() - started
        assert state != "SCHEDULED" and waited < 60, f"still {state} after {waited:.1f} s:\n{served.log_tail()}"
    finally:
        from engine.stack import stop_process_group

        stop_process_group(served.process)
