"""The Prefect server's idle loops slowed in engine/prefect_server.py still deliver what they exist for."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

from engine.prefect_server import _POLL, patch_pubsub_listening


def test_docket_cancellation_listening_asks_less_often_and_still_hears_a_cancel_at_once() -> None:
    """docket's cancellation listener asks with timeout=0.1 in a loop: after the patch an empty ask waits `_POLL`
    (one thread hand-off instead of twenty), and a message published meanwhile ends the wait at once."""
    from docket import Docket

    patch_pubsub_listening()

    async def scenario() -> tuple[float, float, object]:
        async with Docket(name=f"test-{uuid.uuid4().hex[:8]}", url="memory://") as docket, \
                docket._pubsub() as pubsub:
            await pubsub.psubscribe(docket.key("cancel:*"))
            assert (await pubsub.get_message(timeout=1))["type"] == "psubscribe"
            started = time.monotonic()
            empty = await pubsub.get_message(timeout=0.1)
            assert empty is None
            waited_empty = time.monotonic() - started

            async def cancel_soon() -> None:
                await asyncio.sleep(0.3)
                async with docket.redis() as redis:
                    await redis.publish(docket.key("cancel:some-task"), "some-task")

            publisher = asyncio.create_task(cancel_soon())
            started = time.monotonic()
            message = await pubsub.get_message(timeout=0.1)
            waited_message = time.monotonic() - started
            await publisher
            return waited_empty, waited_message, message

    waited_empty, waited_message, message = asyncio.run(scenario())
    assert waited_empty >= _POLL.total_seconds() * 0.9, waited_empty
    assert isinstance(message, dict) and message["type"] == "pmessage", message
    assert waited_message < 1.5, f"the cancel took {waited_message:.2f} s to arrive"


_APP_REUSE_PROBE = """
import prefect.logging.configuration as logging_configuration
from engine.prefect_server import patch_app_reuse
from prefect.server.api import server

setups = []
setup_logging = logging_configuration.setup_logging
logging_configuration.setup_logging = lambda *a, **k: setups.append(1) or setup_logging(*a, **k)
patch_app_reuse()
first = server.create_app(final=True)  # as `prefect server start` builds it
after_first = len(setups)
again = [server.create_app() for _ in range(3)]  # as the server's in-memory clients ask for it
fresh = server.create_app(ignore_cache=True)
print(after_first, len(setups) - after_first, all(app is first for app in again), fresh is not first)
"""


def test_the_servers_own_clients_get_the_app_already_built_without_setting_up_logging_again() -> None:
    """Prefect's create_app() sets up logging and hashes every setting before it looks in its cache: each of the
    server's in-memory clients cost 0.1-0.2 s so, as the server starts answering. Patched, they get the same app
    (as Prefect's cache would give them) for nothing; a call that asks for a fresh app still gets one."""
    done = subprocess.run([sys.executable, "-c", _APP_REUSE_PROBE], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    built_once, set_up_again, same_app, fresh_app = done.stdout.split()
    assert (built_once, same_app, fresh_app) == ("1", "True", "True"), done.stdout
    assert set_up_again == "1", "only the call asking for a fresh app sets logging up again"
