"""In-process publish/subscribe of live events for SSE clients (alarms, devices, rooms, supply)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final

Event = dict[str, Any]

# The last item a subscription receives once the bus is closed: its reader should stop.
END: Final[Event] = {"event": "end", "data": None}


class EventBus:
    """Fan-out of events to subscribers; a slow subscriber loses its oldest events, never blocks others."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._closed = False
        self.published = 0
        self.dropped = 0

    def publish(self, kind: str, data: Any) -> None:
        """Send an event to every subscriber (non-blocking)."""
        event: Event = {"event": kind, "data": data}
        self.published += 1
        if self._closed:  # every subscription has ended at END, which must not be pushed out
            return
        for q in self._subscribers:
            self._put(q, event)

    def _put(self, q: asyncio.Queue[Event], event: Event) -> None:
        if q.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                q.get_nowait()
                self.dropped += 1
        q.put_nowait(event)

    def close(self) -> None:
        """End every subscription (each receives END) and every later one at once: the service is stopping.

        Idempotent. An event stream held open by a browser would otherwise keep the HTTP server
        waiting for its connection to close.
        """
        if self._closed:
            return
        self._closed = True
        for q in self._subscribers:
            self._put(q, END)

    @property
    def closed(self) -> bool:
        """close() was called."""
        return self._closed

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        """A queue receiving every event published while the context is open, then END once the bus closes."""
        q: asyncio.Queue[Event] = asyncio.Queue(self._queue_size)
        if self._closed:
            q.put_nowait(END)
        self._subscribers.add(q)
        try:
            yield q
        finally:
            self._subscribers.discard(q)

    @property
    def subscribers(self) -> int:
        """Number of open subscriptions."""
        return len(self._subscribers)
