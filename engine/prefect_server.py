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

Pinned to prefect 3.9.x with pydocket 0.27's `Worker.__init__(..., minimum_check_interval, scheduling_resolution)`;
if a later docket renames them, this refuses to start (the stack says the Prefect server exited) rather than
silently polling at the old rate.
"""

from __future__ import annotations

import functools
import inspect
import sys
from datetime import timedelta
from typing import Any

# 2 s: idle wake-ups drop from 8 a second to 1, while housekeeping that runs every 60 s is at most 2 s later.
_POLL = timedelta(seconds=2)
_DEFAULTS = {"minimum_check_interval": _POLL, "scheduling_resolution": _POLL}


def patch_docket_worker() -> None:
    """Make `_DEFAULTS` the defaults of docket's `Worker`; a RuntimeError if its signature no longer has them."""
    from docket import Worker

    original = Worker.__init__
    missing = set(_DEFAULTS) - set(inspect.signature(original).parameters)
    if missing:
        raise RuntimeError(f"docket.Worker.__init__ has no {', '.join(sorted(missing))} any more "
                           f"(engine/prefect_server.py is written for pydocket 0.27 under prefect 3.9.x)")

    @functools.wraps(original)
    def __init__(self: Worker, *args: Any, **kwargs: Any) -> None:
        for name, value in _DEFAULTS.items():
            kwargs.setdefault(name, value)
        original(self, *args, **kwargs)

    Worker.__init__ = __init__  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    """Patch docket, then run `prefect server start` with `argv` in this process."""
    patch_docket_worker()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *argv]  # Prefect's entry point reads its arguments from sys.argv
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
