"""Wake a serving process the moment one of its runs becomes Scheduled, instead of polling the API every second.

Why: idle, the poll was the largest cost we added to the Prefect server (benchmarks/idle_cpu.py, issue 13): each
`get_scheduled_flow_runs` costs it ~15 ms of CPU, so a 2 s poll kept ~0.75 % of a core busy doing nothing, and a
longer poll would have made every approval wait longer for its run to start again. Prefect already announces each
state change on its event stream (`prefect.flow-run.<state name>` with the `prefect.state-type` label): a Run
clicked in the UI (`Scheduled`), a suspended run resumed by an approval (`Resuming`), a run our sweep started in
place of a dead one. So `ops serve` and `ops worker` subscribe to the flow-run events of the SCHEDULED type and
poll at once when one arrives, then every `_FOLLOW_POLL_SECONDS` for `_FOLLOW_SECONDS`: an approval can resume a
run before the process that suspended it has exited, and until it has, the runner skips the run as its own (seen
in `ops demo`: the resumed run waited 10 s for the next timer poll). A burst of events is one such window. Their
ordinary poll stays as the fallback (`OPS_RESUME_POLL_SECONDS`): it finds what the stream missed while reconnecting, and
runs whose schedule came due with no event (the scheduler creates them days ahead).

The stream is Prefect's own websocket (`/api/events/out`); a server without it (a broken proxy) costs only the
fallback poll's latency, and the subscription is retried every `_RETRY_SECONDS` meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

_RETRY_SECONDS = 10.0
_FOLLOW_SECONDS = 10.0
_FOLLOW_POLL_SECONDS = 1.0
_LOG = logging.getLogger("opsdirector.run_wake")


def _scheduled_runs_filter() -> object:
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.events.schemas.events import ResourceSpecification

    return EventFilter(event=EventNameFilter(prefix=["prefect.flow-run."]),
                       resource=EventResourceFilter(labels=ResourceSpecification({"prefect.state-type": "SCHEDULED"})))


async def woken_while(serving: Coroutine[Any, Any, object], poll: Callable[[], Awaitable[object]]) -> None:
    """Await `serving` (a runner's or a worker's start) while each run becoming Scheduled calls `poll`."""
    waking = asyncio.create_task(wake_on_scheduled_runs(poll))
    try:
        await serving
    finally:
        waking.cancel()


async def wake_on_scheduled_runs(poll: Callable[[], Awaitable[object]], *, woken: asyncio.Event | None = None,
                                 retry_seconds: float = _RETRY_SECONDS) -> None:
    """Call `poll` each time a flow run becomes Scheduled anywhere on the API, until cancelled.

    `woken`, if given, is set after each poll an event caused (for tests and the benchmark to wait on).
    """
    wanted = asyncio.Event()

    async def _polling() -> None:
        while True:
            await wanted.wait()
            until = asyncio.get_running_loop().time() + _FOLLOW_SECONDS
            while asyncio.get_running_loop().time() < until:
                if wanted.is_set():
                    wanted.clear()
                    until = asyncio.get_running_loop().time() + _FOLLOW_SECONDS
                try:
                    await poll()
                except Exception:  # the fallback poll covers a failed one; the next event tries again
                    _LOG.warning("a poll woken by a scheduled run failed", exc_info=True)
                if woken is not None:
                    woken.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wanted.wait(), _FOLLOW_POLL_SECONDS)

    poller = asyncio.create_task(_polling())
    try:
        while True:
            try:
                await _subscribe(wanted)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the server restarting, a proxy without websockets: poll meanwhile
                _LOG.info("Prefect's event stream is unavailable (%s); polling only, retrying in %.0f s",
                          error, retry_seconds)
            await asyncio.sleep(retry_seconds)
    finally:
        poller.cancel()


async def _subscribe(wanted: asyncio.Event) -> None:
    from prefect.events.clients import get_events_subscriber

    # On (re)connecting, the subscriber first replays what it missed (from its last event, or a minute back).
    async with get_events_subscriber(filter=_scheduled_runs_filter()) as subscriber:  # type: ignore[arg-type]
        async for _event in subscriber:
            wanted.set()
