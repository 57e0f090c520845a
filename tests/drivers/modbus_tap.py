"""A TCP proxy in front of a Modbus TCP server that records the function code of every request through it."""

from __future__ import annotations

import asyncio
import contextlib

WRITE_FUNCTIONS = frozenset({5, 6, 15, 16, 22, 23})


class ModbusTap:
    """Listens on a free port and forwards to `target_port`; `functions` lists what clients asked for."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.functions: list[int] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def writes(self) -> list[int]:
        """Function codes of write requests that went through."""
        return [f for f in self.functions if f in WRITE_FUNCTIONS]

    async def __aenter__(self) -> ModbusTap:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        down = asyncio.create_task(self._pump(up_reader, writer, record=False))
        up = asyncio.create_task(self._pump(reader, up_writer, record=True))
        self._tasks |= {down, up}
        await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        for task in (down, up):
            task.cancel()
        for w in (writer, up_writer):
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, record: bool) -> None:
        buffer = b""
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                if record:
                    buffer += data
                    # MBAP header: transaction(2) protocol(2) length(2) unit(1), then the function code
                    while len(buffer) >= 8 and len(buffer) >= 6 + int.from_bytes(buffer[4:6], "big"):
                        self.functions.append(buffer[7])
                        buffer = buffer[6 + int.from_bytes(buffer[4:6], "big") :]
                writer.write(data)
                await writer.drain()
