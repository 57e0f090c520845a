"""Server-sent events: alarm transitions and floods, device online/offline, room and supply changes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from service.api.deps import ServicesDep, Viewer
from service.live.events import END

router = APIRouter(prefix="/api", tags=["events"])

KEEPALIVE_S = 15.0
DISCONNECT_POLL_S = 1.0


def sse(event: str, data: object) -> str:
    """One SSE message."""
    return f"event: {event}\ndata: {json.dumps(data, default=str, ensure_ascii=False)}\n\n"


@router.get(
    "/events",
    summary="Live events (text/event-stream)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(request: Request, svc: ServicesDep, _: Viewer) -> StreamingResponse:
    """`alarm`, `alarm_flood` (start and end), `device`, `room`, `supply`, `sweep`, `command` and `override`
    events as they happen; a comment line every 15 s keeps proxies open. The stream ends when the
    service stops (the events bus closes), so an open dashboard does not hold the shutdown up."""

    async def stream() -> AsyncIterator[str]:
        async with svc.events.subscribe() as queue:
            svc.metrics.sse_clients.inc()
            try:
                yield sse("hello", {"site": svc.site.site.id, "at": svc.clock.now().isoformat()})
                idle_s = 0.0
                # Look for a gone client every second: behind an ASGI 2.4 server Starlette notices one
                # only when a send fails, so an idle stream would linger (and hold up a shutdown)
                # until the next keepalive.
                while not await request.is_disconnected():
                    try:
                        item = await asyncio.wait_for(queue.get(), DISCONNECT_POLL_S)
                    except TimeoutError:
                        idle_s += DISCONNECT_POLL_S
                        if idle_s >= KEEPALIVE_S:
                            idle_s = 0.0
                            yield ": keepalive\n\n"
                        continue
                    if item is END:
                        return
                    idle_s = 0.0
                    yield sse(item["event"], item["data"])
            finally:
                svc.metrics.sse_clients.dec()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
