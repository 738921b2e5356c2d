"""`python -m engine.prefect_server ARGS`: Prefect's own `prefect server start ARGS`, its docket worker polling less.

Why: idle, the Prefect server's largest remaining cost (py-spy, issue 13) is docket's background-task worker, which
by default reads its task stream (`minimum_check_interval`) and moves due tasks into it (`scheduling_resolution`)
every 250 ms, i.e. 8 wake-ups a second doing nothing. Prefect builds it as `Worker(docket)`
(prefect/server/api/background_workers.py) with no setting for either, so the defaults are changed here, in the
server's own process: `prefect server start` with one worker runs uvicorn in-process (cli/_server_utils.py
`_run_in_foreground`).

What runs through docket in Prefect 3.9 and so may start up to `_POLL` later: the perpetual services (the
scheduler, late runs, pause expirations, foreman, repossessor, cancellation and cleanup reconcilers, vacuum — each
every 60 s here, see engine/stack.py local_environment) and the tasks they fan out (mark a run late, fail an expired
pause, revoke an expired concurrency lease, cancel a cancelled run's children), plus marking deployments and work
queues ready after a runner's poll and deleting a deleted run's logs. None of it is on a run's path: creating,
starting, pausing and resuming runs are API calls that do not go through docket.

Two more idle loops are slowed here, each measured side by side with four bare servers (issue 13, % of a core,
server process): the stock-3.9 set-up with the docket patch 1.33 %, plus the two below 0.56 %.
- docket's cancellation listener asks its pub/sub for a message with a 0.1 s timeout in a loop, and the in-memory
  Redis (burner_redis, Prefect's default `memory://` docket) serves each ask as a thread-pool call: ten thread
  hand-offs a second (−0.48 points). It now blocks up to `_POLL` per ask; a cancellation still arrives the moment
  it is published (the blocking get returns on it), only noticing shutdown may take up to `_POLL`.
- the automations consumer evaluates proactive triggers and deletes expired buckets every 5 s, a database session
  each time, with the interval hard-coded (`triggers.consumer()` is called without the setting Prefect has for it,
  PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY): every `_PROACTIVE` now, the setting's value in the local stack
  (−0.27 points). A proactive automation ("no event within an hour") fires up to that much later.

Pinned to prefect 3.9.x with pydocket 0.27's `Worker.__init__(..., minimum_check_interval, scheduling_resolution)`,
burner_redis 0.1's `PubSub._queue_get(timeout)` and prefect's `triggers.consumer(periodic_granularity)`; if one is
renamed, this refuses to start (the stack says the Prefect server exited) rather than silently polling at the old
rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import queue
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

# 2 s: idle wake-ups drop from 8 a second to 1, while housekeeping that runs every 60 s is at most 2 s later.
_POLL = timedelta(seconds=2)
_DEFAULTS = {"minimum_check_interval": _POLL, "scheduling_resolution": _POLL}
# As engine/stack.py sets PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY for the docket-run half of the same work.
_PROACTIVE = timedelta(seconds=30)


def patch_docket_worker() -> None:
    """Make `_DEFAULTS` the defaults of docket's `Worker`; a RuntimeError if its signature no longer has them."""
    from docket import Worker

    original = Worker.__init__
    missing = set(_DEFAULTS) - set(inspect.signature(original).parameters)
    if missing:
        raise _refuse(f"docket.Worker.__init__ has no {', '.join(sorted(missing))} any more")

    @functools.wraps(original)
    def __init__(self: Worker, *args: Any, **kwargs: Any) -> None:
        for name, value in _DEFAULTS.items():
            kwargs.setdefault(name, value)
        original(self, *args, **kwargs)

    Worker.__init__ = __init__  # type: ignore[method-assign]


def _refuse(what: str) -> RuntimeError:
    return RuntimeError(f"{what} (engine/prefect_server.py is written for pydocket 0.27 and burner_redis 0.1 "
                        "under prefect 3.9.x)")


def patch_pubsub_listening() -> None:
    """Make burner_redis's blocking pub/sub read wait up to `_POLL` per thread hand-off instead of 0.1 s."""
    from burner_redis.pubsub import PubSub

    if list(inspect.signature(PubSub._queue_get).parameters) != ["self", "timeout"]:
        raise _refuse("burner_redis.pubsub.PubSub._queue_get(timeout) is gone")
    get_message = PubSub.get_message

    async def _queue_get(self: PubSub, timeout: float | None) -> Any:
        if timeout == 0.0:
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _POLL.total_seconds() if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await asyncio.to_thread(self._queue.get, True, min(wait, _POLL.total_seconds()))
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    return None

    @functools.wraps(get_message)
    async def _get_message(self: PubSub, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0) -> Any:
        # docket's listener asks with timeout=0.1 and asks again on None: one ask per `_POLL` is the same loop.
        if timeout is not None and 0.0 < timeout < _POLL.total_seconds():
            timeout = _POLL.total_seconds()
        return await get_message(self, ignore_subscribe_messages, timeout)

    PubSub._queue_get = _queue_get  # type: ignore[method-assign]
    PubSub.get_message = _get_message  # type: ignore[method-assign]


def patch_trigger_evaluation() -> None:
    """Give the automations consumer `_PROACTIVE` as its periodic evaluation interval."""
    from prefect.server.events import triggers

    consumer = triggers.consumer
    if "periodic_granularity" not in inspect.signature(consumer).parameters:
        raise _refuse("prefect.server.events.triggers.consumer(periodic_granularity) is gone")

    @contextlib.asynccontextmanager
    async def _consumer(periodic_granularity: timedelta = _PROACTIVE) -> AsyncIterator[Any]:
        async with consumer(periodic_granularity) as handler:
            yield handler

    triggers.consumer = _consumer


def patch_app_reuse() -> None:
    """Have `create_app()` hand back the app this process built, without setting up logging and hashing every
    setting again first (Prefect's own cache is looked up only after both).

    Why: the server's own in-memory clients (the automations' actions, the events client) each call `create_app()`
    when they start, and each such call costs 0.1-0.2 s of CPU (setup_logging re-reads the logging config and
    `Settings.hash_key` dumps every setting) just as the server starts answering, when `ops up` waits on its
    first queries. Same rule as Prefect's cache (settings and the process environment do not change while the
    server runs): the same app for the same `ephemeral` and `webserver_only`; a call with `settings` or
    `ignore_cache` goes to Prefect as before.
    """
    from prefect.server.api import server

    create_app = server.create_app
    if list(inspect.signature(create_app).parameters) != ["settings", "ephemeral", "webserver_only", "final",
                                                          "ignore_cache"]:
        raise _refuse("prefect.server.api.server.create_app(settings, ephemeral, webserver_only, final, "
                      "ignore_cache) changed")
    built: dict[tuple[bool, bool], Any] = {}

    @functools.wraps(create_app)
    def _create_app(settings: Any = None, ephemeral: bool = False, webserver_only: bool = False,
                    final: bool = False, ignore_cache: bool = False) -> Any:
        reusable = settings is None and not ignore_cache
        key = (ephemeral or bool(os.getenv("PREFECT__SERVER_EPHEMERAL")),
               webserver_only or bool(os.getenv("PREFECT__SERVER_WEBSERVER_ONLY")))
        if reusable and key in built:
            return built[key]
        app = create_app(settings, ephemeral, webserver_only, final, ignore_cache)
        if reusable:
            built[key] = app
        return app

    server.create_app = _create_app


_POSTGRES_SECONDS = 30.0


def main(argv: list[str]) -> None:
    """Patch docket, its pub/sub, the automations consumer and app creation, then run `prefect server start` with
    `argv` here, once the PostgreSQL `ops up` started for it is ready."""
    patch_docket_worker()
    patch_pubsub_listening()
    patch_trigger_evaluation()
    patch_app_reuse()
    from prefect.cli import app

    from engine.prefect_postgres import STARTED_VARIABLE, wait_until_ready

    if postgres := os.environ.pop(STARTED_VARIABLE, None):
        pid, _, pgdata = postgres.partition(":")
        wait_until_ready(Path(pgdata), _POSTGRES_SECONDS, int(pid))
    sys.argv = ["prefect", "server", "start", *argv]  # Prefect's entry point reads its arguments from sys.argv
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
