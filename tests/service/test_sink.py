"""TelemetrySink against a real VictoriaMetrics: delivery, outage, bound, SIGKILL durability."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import sys
import textwrap
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from drivers.types import Reading
from service.telemetry.lineproto import telemetry_line
from service.telemetry.sink import Outbox, TelemetrySink
from tests import servers

ROOT = Path(__file__).resolve().parents[2]


def export(url: str, site: str, expect: int) -> dict[int, float]:
    """timestamp (ms) -> value of the telemetry_value samples of one site, once `expect` are visible."""
    deadline = time.monotonic() + 20
    while True:
        samples = _export(url, site)
        if len(samples) >= expect or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def _export(url: str, site: str) -> dict[int, float]:
    with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=10):
        pass
    query = urllib.parse.urlencode({"match[]": f'telemetry_value{{site="{site}"}}'})
    with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=10) as r:
        body = r.read().decode()
    samples: dict[int, float] = {}
    for row in body.splitlines():
        series = json.loads(row)
        samples.update(zip(series["timestamps"], series["values"], strict=True))
    return samples


def make_lines(site: str, count: int, start: datetime, first: int = 0) -> list[str]:
    """`count` readings 1 ms apart, value = index, over three devices."""
    lines = []
    for i in range(first, first + count):
        reading = Reading(
            device=f"d{i % 3}", point="p", value=float(i), unit="kW", ts=start + timedelta(milliseconds=i)
        )
        line = telemetry_line(reading, {"site": site})
        assert line is not None
        lines.append(line)
    return lines


def ms(start: datetime, i: int) -> int:
    return int((start + timedelta(milliseconds=i)).timestamp() * 1000)


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def now_ms() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def dead_url() -> str:
    return f"http://127.0.0.1:{servers.free_port()}"


async def test_delivers_batches_with_original_timestamps(victoria: servers.Server, tmp_path: Path) -> None:
    site, start = uuid.uuid4().hex, now_ms()
    drops: list[int] = []
    sink = TelemetrySink(
        victoria.url,
        "",
        "",
        "wk",
        tmp_path / "outbox",
        max_outbox_lines=100_000,
        batch_lines=500,
        flush_interval_s=0.1,
        on_drop=drops.append,
    )
    await sink.start()
    lines = make_lines(site, 2000, start)
    sink.put_many(lines[:1500])
    for line in lines[1500:]:
        sink.put(line)
    await wait_until(lambda: sink.written == 2000)
    assert sink.outbox_depth == 0
    await sink.stop()
    assert export(victoria.url, site, 2000) == {ms(start, i): float(i) for i in range(2000)}
    assert drops == [] and sink.dropped == 0
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == ["lock"]


async def test_outage_mid_stream_loses_nothing(victoria: servers.Server, tmp_path: Path) -> None:
    site, start = uuid.uuid4().hex, now_ms()
    sink = TelemetrySink(
        victoria.url,
        "",
        "",
        "wk",
        tmp_path / "outbox",
        max_outbox_lines=100_000,
        batch_lines=200,
        flush_interval_s=0.05,
        on_drop=lambda n: None,
        max_backoff_s=0.5,
    )
    await sink.start()
    lines = make_lines(site, 3000, start)
    sink.put_many(lines[:1000])
    await wait_until(lambda: sink.written == 1000)
    await asyncio.to_thread(victoria.stop)
    for chunk in range(1000, 2000, 100):
        sink.put_many(lines[chunk : chunk + 100])
        await asyncio.sleep(0.02)
    await wait_until(lambda: sink.retries > 0)
    assert sink.written == 1000
    await asyncio.to_thread(victoria.start)
    sink.put_many(lines[2000:])
    await wait_until(lambda: sink.written == 3000)
    await sink.stop()
    assert export(victoria.url, site, 3000) == {ms(start, i): float(i) for i in range(3000)}
    assert sink.dropped == 0


async def test_full_outbox_drops_oldest_with_exact_count(victoria: servers.Server, tmp_path: Path) -> None:
    site, start = uuid.uuid4().hex, now_ms()
    drops: list[int] = []
    outbox = tmp_path / "outbox"
    sink = TelemetrySink(
        dead_url(),
        "",
        "",
        "wk",
        outbox,
        max_outbox_lines=800,
        batch_lines=100,
        flush_interval_s=0.05,
        on_drop=drops.append,
        max_backoff_s=0.2,
    )
    await sink.start()
    lines = make_lines(site, 2000, start)
    for chunk in range(0, 2000, 50):
        sink.put_many(lines[chunk : chunk + 50])
        await asyncio.sleep(0.005)
    await sink.stop(drain_timeout_s=0.1)
    assert sink.written == 0
    assert sum(drops) == sink.dropped
    assert sink.dropped + sink.outbox_depth == 2000
    assert 700 <= sink.outbox_depth <= 800

    kept = sink.outbox_depth
    again = TelemetrySink(victoria.url, "", "", "wk", outbox, max_outbox_lines=800, on_drop=drops.append)
    assert again.outbox_depth == kept
    await again.start()
    await wait_until(lambda: again.written == kept)
    await again.stop()
    delivered = export(victoria.url, site, kept)
    # The oldest lines went, except the <= 2 batches (here 1 segment each) in flight when the
    # bound was hit: those are spared, so the newest kept - 200 lines are surely there.
    assert len(delivered) == kept
    assert {ms(start, i) for i in range(2000 - kept + 200, 2000)} <= delivered.keys()
    assert all(delivered[ms(start, i)] == i for i in range(2000) if ms(start, i) in delivered)


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import datetime, UTC
    from pathlib import Path
    from tests.service.test_sink import make_lines
    from service.telemetry.sink import TelemetrySink

    async def main():
        site, outbox, url, start = sys.argv[1], Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
        sink = TelemetrySink(url, "", "", "wk", outbox, max_outbox_lines=1_000_000, batch_lines=500,
                             flush_interval_s=0.05, on_drop=lambda n: None, max_backoff_s=0.2)
        await sink.start()
        lines = make_lines(site, 100_000, datetime.fromtimestamp(start, UTC))
        for i, line in enumerate(lines):
            sink.put(line)
            if i % 100 == 99:
                print(i + 1, flush=True)
                await asyncio.sleep(0)

    asyncio.run(main())
    """
)


async def test_sigkill_keeps_every_acknowledged_line(victoria: servers.Server, tmp_path: Path) -> None:
    site, start = uuid.uuid4().hex, now_ms()
    outbox = tmp_path / "outbox"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        site,
        str(outbox),
        dead_url(),
        str(start.timestamp()),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    put = 0
    while put < 3000:
        put = int(await asyncio.wait_for(child.stdout.readline(), 30))
    os.kill(child.pid, signal.SIGKILL)
    await asyncio.wait_for(child.wait(), 10)

    sink = TelemetrySink(victoria.url, "", "", "wk", outbox, max_outbox_lines=1_000_000, on_drop=lambda n: None)
    depth = sink.outbox_depth
    assert depth >= put
    await sink.start()
    await wait_until(lambda: sink.written == depth)
    await sink.stop()
    assert export(victoria.url, site, depth) == {ms(start, i): float(i) for i in range(depth)}


def test_recovery_cuts_a_torn_line_and_keeps_order(tmp_path: Path) -> None:
    (tmp_path / f"{1:016d}-2.seg").write_bytes(b"a 1\nb 2\n")
    (tmp_path / f"{2:016d}.open").write_bytes(b"c 3\nd 4\ne 5")
    box = Outbox(tmp_path, max_lines=100, segment_lines=10)
    assert box.depth == 4
    box.append(["f 6"])
    box.seal()
    batch = box.take(100)
    assert Outbox.read(batch) == b"a 1\nb 2\nc 3\nd 4\nf 6\n"
    assert box.commit(len(batch)) == 5 and box.depth == 0
    box.close()


def test_outbox_refuses_a_second_user_and_newlines(tmp_path: Path) -> None:
    box = Outbox(tmp_path, max_lines=10, segment_lines=5)
    with pytest.raises(RuntimeError, match="in use"):
        Outbox(tmp_path, max_lines=10, segment_lines=5)
    with pytest.raises(ValueError, match="newline"):
        box.append(["a 1\nb 2"])
    box.close()


def test_outbox_bound_spares_the_batch_in_flight(tmp_path: Path) -> None:
    box = Outbox(tmp_path, max_lines=10, segment_lines=5)
    assert box.append([f"m v={i}" for i in range(10)]) == 0
    batch = box.take(5)
    assert box.append([f"m v={i}" for i in range(10, 15)]) == 5
    assert Outbox.read(batch) == b"".join(f"m v={i}\n".encode() for i in range(5))
    assert box.commit(len(batch)) == 5
    assert Outbox.read(box.take(100)) == b"".join(f"m v={i}\n".encode() for i in range(10, 15))
    box.close()


async def test_rejected_batch_is_counted_as_dropped_and_the_rest_flows(tmp_path: Path) -> None:
    # VictoriaMetrics skips bad lines silently; InfluxDB answers 400. A local stand-in answers like InfluxDB.
    seen: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = gzip.decompress(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.headers["Content-Encoding"], body))
            self.send_response(400 if b"bad" in body else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    drops: list[int] = []
    url = f"http://127.0.0.1:{server.server_address[1]}"
    sink = TelemetrySink(
        url, "", "", "wk", tmp_path, max_outbox_lines=1000, batch_lines=10, flush_interval_s=0.05, on_drop=drops.append
    )
    await sink.start()
    sink.put_many(["m v=1 1", "m bad 2"])
    await wait_until(lambda: sink.rejected == 2)
    sink.put_many(["m v=3 3"])
    await wait_until(lambda: sink.written == 1)
    await sink.stop()
    server.shutdown()
    server.server_close()
    assert drops == [2] and sink.dropped == 2 and sink.retries == 0
    assert seen == [("gzip", b"m v=1 1\nm bad 2\n"), ("gzip", b"m v=3 3\n")]


async def test_writes_when_the_previous_write_returns_and_batches_what_came_meanwhile(tmp_path: Path) -> None:
    # A stand-in database that holds the first write until released: lines put meanwhile must wait
    # for it, then leave together in one request, not one request each and not after a fixed period.
    bodies: list[bytes] = []
    first_arrived, release = threading.Event(), threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = gzip.decompress(self.rfile.read(int(self.headers["Content-Length"])))
            bodies.append(body)
            if len(bodies) == 1:
                first_arrived.set()
                release.wait(30)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    # A long minimum interval between writes would show up as a long test, not a failure; the
    # default (0.05 s) is what the service runs with.
    sink = TelemetrySink(url, "", "", "wk", tmp_path, max_outbox_lines=100_000, on_drop=lambda n: None)
    await sink.start()
    sink.put("m v=0 0")  # the writer is idle: this goes out without waiting for a period
    assert await asyncio.to_thread(first_arrived.wait, 30)
    for i in range(1, 301):  # a burst while the first write is in flight
        sink.put(f"m v={i} {i}")
    release.set()
    await wait_until(lambda: sink.written == 301)
    assert sink.outbox_depth == 0
    await sink.stop()
    server.shutdown()
    server.server_close()
    assert bodies == [b"m v=0 0\n", b"".join(f"m v={i} {i}\n".encode() for i in range(1, 301))]
    assert sink.writes == 2
