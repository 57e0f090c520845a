"""In-process publish/subscribe of live events for SSE clients (alarms, devices, rooms, supply)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

Event = dict[str, Any]


class EventBus:
    """Fan-out of events to subscribers; a slow subscriber loses its oldest events, never blocks others."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self.published = 0
        self.dropped = 0

    def publish(self, kind: str, data: Any) -> None:
        """Send an event to every subscriber (non-blocking)."""
        event: Event = {"event": kind, "data": data}
        self.published += 1
        for q in self._subscribers:
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
                    self.dropped += 1
            q.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        """A queue receiving every event published while the context is open."""
        q: asyncio.Queue[Event] = asyncio.Queue(self._queue_size)
        self._subscribers.add(q)
        try:
            yield q
        finally:
            self._subscribers.discard(q)

    @property
    def subscribers(self) -> int:
        """Number of open subscriptions."""
        return len(self._subscribers)
