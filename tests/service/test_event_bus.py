"""The events bus: fan-out to subscribers, and close() ending every subscription (the service stopping)."""

from __future__ import annotations

import asyncio

from service.live.events import END, EventBus


async def test_close_ends_open_and_later_subscriptions() -> None:
    bus = EventBus(queue_size=2)
    async with bus.subscribe() as queue:
        bus.publish("alarm", {"id": 1})
        bus.close()
        bus.close()  # idempotent: one END
        bus.publish("alarm", {"id": 2})  # after close: delivered to no one, END stays last
        assert await queue.get() == {"event": "alarm", "data": {"id": 1}}
        assert await queue.get() is END
        assert queue.empty()
        async with bus.subscribe() as late:
            assert late.get_nowait() is END
    assert bus.closed and bus.subscribers == 0 and bus.published == 2


async def test_end_survives_a_full_queue() -> None:
    bus = EventBus(queue_size=2)
    async with bus.subscribe() as queue:
        for i in range(3):
            bus.publish("room", i)
        bus.close()
        items = [queue.get_nowait() for _ in range(queue.qsize())]
    assert items == [{"event": "room", "data": 2}, END]
    assert bus.dropped == 2


async def test_a_waiting_reader_wakes_at_close() -> None:
    bus = EventBus()
    async with bus.subscribe() as queue:
        waiting = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        bus.close()
        assert await asyncio.wait_for(waiting, 1) is END
