"""The HTTP server of the service: uvicorn's, ending the live event streams as it begins to stop."""

from __future__ import annotations

import contextlib
import socket
import sys

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE

from service.live.events import EventBus


class Server(uvicorn.Server):
    """uvicorn's server that closes the events bus before it waits for open connections.

    uvicorn runs the application's lifespan shutdown only once every connection has closed, so an
    `/api/events` stream that a browser keeps open would hold a stop up until the browser leaves
    (or a second Ctrl-C). Closing the bus first ends those streams, their connections close, and
    the shutdown goes on at once.
    """

    def __init__(self, config: uvicorn.Config, events: EventBus) -> None:
        super().__init__(config)
        self.events = events

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """End the event streams, then shut down as uvicorn does."""
        self.events.close()
        await super().shutdown(sockets)


def run(app: FastAPI, events: EventBus, *, host: str, port: int) -> None:
    """`uvicorn.run` for one process with this Server: until interrupted; exit status 3, as uvicorn's,
    when the server could not start."""
    server = Server(uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False), events)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
