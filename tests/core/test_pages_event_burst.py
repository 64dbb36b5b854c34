"""A burst of events reaches a live listener whole: the pusher must not drop pushes under load (on Redis
it once opened one connection per event of a batch and lost most of them to "Too many connections";
the layers' default channel capacity of 100 dropped the rest)."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer

from autopilot.events import PUSH_TYPE, flush_pushes, project_group, push_event

BURST = 600


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_pushes_reaches_a_listening_channel_whole():
    project_id = 987_654  # a group of its own; pushes never look at the database

    async def scenario() -> set[int]:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(project_group(project_id), channel)
        try:
            loop = asyncio.get_running_loop()

            def burst():
                for i in range(BURST):
                    push_event(
                        {
                            "id": i + 1,
                            "project": project_id,
                            "kind": "burst",
                            "subject_type": "",
                            "subject_id": None,
                            "data": {},
                        }
                    )
                assert flush_pushes(120)

            await loop.run_in_executor(None, burst)
            received: set[int] = set()
            while len(received) < BURST:
                try:
                    message = await asyncio.wait_for(layer.receive(channel), timeout=10)
                except TimeoutError:
                    break
                assert message["type"] == PUSH_TYPE
                received.add(message["event"]["id"])
            return received
        finally:
            await layer.group_discard(project_group(project_id), channel)

    received = asyncio.run(scenario())
    assert len(received) == BURST, f"{BURST - len(received)} of {BURST} pushes were lost"
