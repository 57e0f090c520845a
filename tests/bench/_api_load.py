"""HTTP load for bench_api (started on the load cores): a fixed number of keep-alive GETs.

    python -m tests.bench._api_load URL PATH REQUESTS CONNECTIONS KEY

CONNECTIONS keep-alive connections, each sending its next request as soon as the previous answer
is read; WARMUP requests first, untimed. A minimal HTTP/1.1 client on asyncio streams: httpx,
the obvious choice, tops out near 700 requests/s on one core of the reference machine, below what
a bare Starlette route serves, so it would measure itself. Prints {"seconds", "requests", "bytes",
"cpu_s"}.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from urllib.parse import urlsplit

import uvloop

from tests.bench._common import report

WARMUP = 200


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Budget:
    """Requests left to send, shared by the connections."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.size = 0


async def connection(host: str, port: int, request: bytes, budget: Budget) -> None:
    """Send requests one after another on one connection while the budget lasts; check each answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while budget.left > 0:
            budget.left -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if status != 200 or length is None:
                raise RuntimeError(f"unexpected answer: {head[:200]!r}")
            budget.size = len(await reader.readexactly(length))
    finally:
        writer.close()
        await writer.wait_closed()


async def load(url: str, path: str, requests: int, connections: int, key: str) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        "Accept: application/json\r\nConnection: keep-alive\r\n\r\n"
    ).encode()
    warm = Budget(WARMUP)
    await asyncio.gather(*(connection(host, port, request, warm) for _ in range(connections)))
    budget = Budget(requests)
    cpu = _cpu_s()
    began = time.perf_counter()
    await asyncio.gather(*(connection(host, port, request, budget) for _ in range(connections)))
    elapsed = time.perf_counter() - began
    return {"seconds": elapsed, "requests": requests, "bytes": budget.size, "cpu_s": _cpu_s() - cpu}


def main(argv: list[str]) -> int:
    url, path, requests, connections, key = argv
    report(uvloop.run(load(url, path, int(requests), int(connections), key)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
