"""The Prefect server's idle loops slowed in engine/prefect_server.py still deliver what they exist for."""

from __future__ import annotations

import asyncio
import time
import uuid

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
