"""Fixtures of the service tests: a local HTTP receiver for webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Receiver:
    """A local HTTP server recording POSTs (path, JSON body); `status` gives the answer per request number."""

    url: str
    requests: list[tuple[str, Any]] = field(default_factory=list)
    status: Callable[[int], int] = lambda n: 200

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> list[tuple[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self.requests) < count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        return list(self.requests)


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local HTTP server in a thread, answering with `handler`; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            box.requests.append((self.path, body))
            self.send_response(box.status(len(box.requests)))
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with serve_http(Handler) as url:
        box.url = url
        yield box
