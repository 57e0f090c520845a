"""A TCP listener in front of a real server that a test opens and shuts, seeing every connection attempt."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class TcpGate:
    """Listens on a free loopback port. Open, it forwards to `target_port`; shut, it accepts each
    connection and hangs up at once (a device or broker that closes on connect). `accepts` holds the
    event-loop time of every connection attempt, open or shut; `on_accept`, if given, is called at
    each attempt (to note what the client's side knew then)."""

    def __init__(self, target_port: int, on_accept: Callable[[], None] | None = None) -> None:
        self.target_port = target_port
        self.on_accept = on_accept
        self.is_open = True
        self.accepts: list[float] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TcpGate:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.shut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def open(self) -> None:
        """Forward new connections."""
        self.is_open = True

    def shut(self) -> None:
        """Hang up on new connections, and drop the ones forwarded so far."""
        self.is_open = False
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    def gaps(self) -> list[float]:
        """Seconds between consecutive connection attempts."""
        return [b - a for a, b in zip(self.accepts, self.accepts[1:], strict=False)]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepts.append(asyncio.get_running_loop().time())
        if self.on_accept is not None:
            self.on_accept()
        if not self.is_open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        down = asyncio.create_task(self._pump(up_reader, writer))
        up = asyncio.create_task(self._pump(reader, up_writer))
        self._tasks |= {down, up}
        await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        for task in (down, up):
            task.cancel()
        for w in (writer, up_writer):
            w.close()
            self._writers.discard(w)
        self._tasks -= {down, up}

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
