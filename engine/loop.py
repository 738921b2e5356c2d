"""The engine loop: the minute-level engine work as function calls in a long-lived process, not as flow runs.

Design (chosen for issue 13): the deadline sweep (engine.sweep.sweep) every OPS_SWEEP_SECONDS, each process's
loop steps (engine.processes.LoopStep: the drill dispatcher, every OPS_DISPATCH_SECONDS) and the run retention
(engine.retention) every OPS_RETENTION_SECONDS run in a daemon thread of whatever process serves the deployments
(`ops serve`, a worker), directly as functions. As scheduled deployments each poll was a flow run in a process
of its own (~3 s of CPU for ~0.15 s of work, 1,728 runs a day in the UI's run list); here a poll costs its own
work only, and nothing it does shows in the run list unless it starts a run people care about (a due drill, the
take-over of a dead run).

At most one loop acts at a time, across processes and machines: each tick first claims (or renews) the
registry's lease `engine-loop` (registry.lease) with one conditional statement; a loop that does not hold it does
nothing and asks again next tick. A holder that dies stops renewing, and another takes over once the lease
expired (at once, if the dead holder was a process of the same machine). A step that raises is logged (secrets
masked) and retried at its next turn; the loop goes on.

    with engine_loop():          # starts the thread; on exit stops it and gives the lease up
        serve_forever()
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from registry import lease, session

log = logging.getLogger(__name__)

LEASE = "engine-loop"
# The lease outlives a few missed renewals (a slow sweep, a database hiccup) before another process may take over.
_LEASE_TICKS = 3


@dataclass
class Step:
    """One piece of the loop's work: `run` every `every` seconds (first at the loop's first tick)."""

    name: str
    every: float
    run: Callable[[], object]
    last: float | None = None  # time.monotonic() of its last start in this process

    def due(self, now: float) -> bool:
        return self.last is None or now - self.last >= self.every


def _sweep() -> object:
    from engine.sweep import sweep

    return sweep()


def _retention() -> object:
    from engine.retention import delete_expired_runs

    return delete_expired_runs()


def default_steps(sweep_seconds: float | None = None, dispatch_seconds: float | None = None,
                  retention_seconds: float | None = None) -> list[Step]:
    """The sweep, every discovered process's loop steps (engine.processes.LoopStep: the drill dispatch) and the
    run retention, at the settings' intervals unless given (`dispatch_seconds` for every process's steps)."""
    from engine import processes
    from engine.settings import get_settings

    settings = get_settings()
    own = [Step(step.name, dispatch_seconds or step.every(settings), step.run)
           for process in processes.discover().values() for step in process.loop_steps]
    return [Step("sweep", sweep_seconds or settings.sweep_seconds, _sweep), *own,
            Step("run retention", retention_seconds or settings.retention_seconds, _retention)]


def _pid_namespace() -> str:
    with contextlib.suppress(OSError):
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:")
    return "-"


def holder_name() -> str:
    """This process as a lease holder: host, pid namespace and pid (to tell a dead local holder), and a token."""
    return f"{socket.gethostname()}:{_pid_namespace()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_local(holder: str) -> bool:
    """Whether `holder` was a process of this machine (same host, same pid namespace) that no longer exists."""
    parts = holder.rsplit(":", 3)
    if len(parts) != 4 or parts[0] != socket.gethostname() or parts[1] != _pid_namespace():
        return False
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


_CREDENTIALS = re.compile(r"(//[^/\s:@]+):[^/\s@]+@")


def _masked(error: BaseException) -> str:
    """The error's type and text with passwords taken out: URLs' user:password@, and every secret setting."""
    text = _CREDENTIALS.sub(r"\1:…@", f"{type(error).__name__}: {error}")
    with contextlib.suppress(Exception):
        from engine.settings import get_settings

        settings = get_settings()
        for secret in (settings.secret_key, settings.mail_url, settings.trail_key):
            value = secret.get_secret_value() if secret is not None else ""
            if len(value) >= 8:
                text = text.replace(value, "…")
    return text[:1000]


@dataclass
class EngineLoop:
    """The loop's state: its steps, its lease, and whether it holds the lease now. `tick` is one turn."""

    steps: list[Step]
    lease_seconds: float
    holder: str = field(default_factory=holder_name)
    holding: bool = False
    errors: int = 0  # steps that raised, in this process (a test reads it; the log says which and why)

    def claim(self) -> bool:
        """Take or renew the lease; True if this loop holds it now."""
        try:
            with session() as db:
                held = lease.holder_of(db, LEASE)
                dead = held.holder if held is not None and held.holder != self.holder and _dead_local(held.holder) \
                    else None
                got = lease.claim(db, LEASE, self.holder, self.lease_seconds, replacing=dead)
        except Exception as error:  # the registry unreachable: act on nothing, ask again next tick
            log.error("engine loop: could not claim its lease: %s", _masked(error))
            got = False
        if got != self.holding:
            log.info("engine loop %s the lease (%s)", "took" if got else "lost", self.holder)
        self.holding = got
        return got

    def tick(self, now: float | None = None) -> list[str]:
        """Claim the lease; if held, run every step that is due. The names of the steps run (even if they raised)."""
        if not self.claim():
            return []
        done = []
        for step in self.steps:
            now = time.monotonic() if now is None else now
            if not step.due(now):
                continue
            step.last = now
            done.append(step.name)
            try:
                step.run()
            except Exception as error:  # retried at its next turn; the loop goes on
                self.errors += 1
                log.error("engine loop: %s failed, retried in %.0f s: %s", step.name, step.every, _masked(error))
            now = None  # a step takes time: the next one is judged by the clock after it
        return done

    def wait_seconds(self, now: float | None = None) -> float:
        """Until the next step is due, but never longer than a third of the lease (it must be renewed)."""
        now = time.monotonic() if now is None else now
        until = [max(0.0, (s.last + s.every) - now) if s.last is not None and self.holding else s.every
                 for s in self.steps]
        return max(0.05, min([*until, self.lease_seconds / _LEASE_TICKS]))

    def release(self) -> None:
        if not self.holding:
            return
        with contextlib.suppress(Exception), session() as db:
            lease.release(db, LEASE, self.holder)
        self.holding = False


@contextlib.contextmanager
def engine_loop(*, sweep_seconds: float | None = None, dispatch_seconds: float | None = None,
                retention_seconds: float | None = None, lease_seconds: float | None = None,
                steps: list[Step] | None = None) -> Iterator[EngineLoop]:
    """Run the engine loop in a daemon thread for the duration of the block; stopped and its lease given up on exit.

    Intervals default to the settings (OPS_SWEEP_SECONDS, OPS_DISPATCH_SECONDS, OPS_RETENTION_SECONDS); the lease
    lasts three sweep intervals unless `lease_seconds` says otherwise. The first tick is at once, so a restarted
    process does what fell due while nothing ran (once, not once per missed minute).
    """
    chosen = steps or default_steps(sweep_seconds, dispatch_seconds, retention_seconds)
    loop = EngineLoop(chosen, lease_seconds or _LEASE_TICKS * min(s.every for s in chosen))
    stopping = threading.Event()

    def run() -> None:
        while not stopping.is_set():
            try:
                loop.tick()
            except Exception as error:  # tick catches its steps' errors; this is a last resort, never a dead loop
                log.error("engine loop: tick failed: %s", _masked(error))
            stopping.wait(loop.wait_seconds())

    thread = threading.Thread(target=run, name="engine-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        stopping.set()
        thread.join(timeout=60)
        loop.release()
