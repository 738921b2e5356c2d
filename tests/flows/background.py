"""A flow run in a thread of the test, for flows that wait on a person while the test plays that person."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Start `call` in a daemon thread; its result (or the exception it raised) lands in the returned dict."""
    outcome: dict[str, Any] = {}

    def _run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as error:  # surfaced by the test's assertion
            outcome["error"] = error

    thread = threading.Thread(target=_run, daemon=True)
    thread.start()
    return thread, outcome


def finished(thread: threading.Thread, outcome: dict[str, Any], what: str, seconds: float = 60) -> Any:
    """The call's result once it has ended; fails the test if it is still waiting or raised."""
    thread.join(timeout=seconds)
    assert not thread.is_alive(), f"{what} is still waiting"
    assert "error" not in outcome, outcome.get("error")
    return outcome["result"]


def until(what: str, probe: Callable[[], T | None], seconds: float = 60) -> T:
    """The probe's first truthy answer; fails the test naming `what` if none comes within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
