"""Telemetry sink: line protocol into InfluxDB (2.x, 3.x, 1.8+) through a bounded disk outbox.

Every line goes to disk first and leaves the outbox only once the database has acknowledged
it, so a database outage of any length loses nothing (up to the bound) and delivery keeps the
order and the original timestamps.

Outbox layout (one directory, one sink process at a time, guarded by a `lock` file):

- ``<seq>.open``: the segment being filled. `put()` appends with a plain `write()` to the OS,
  no user-space buffer, so a line survives a SIGKILL of the process as soon as `put()` returns.
- ``<seq>-<lines>.seg``: sealed segments (renamed from ``.open`` at `segment_lines`, or as soon
  as no write is in flight), delivered oldest first, deleted once the database answered 2xx.

When lines are written: as soon as the previous write has returned and something is waiting,
but at most one write starts per `flush_interval_s` (0.05 s by default). A steady trickle is
visible in the database within that interval plus one write; under a burst, lines gather in the
open segment while a write is in flight and leave in the next batch (up to `batch_lines`), so
a burst still travels in a few large requests.

fsync policy: a segment is fsynced (with the directory) when its delivery fails and on
`stop()`, i.e. exactly when it is going to stay on disk a while. Crash-loss bound: a process
crash (SIGKILL, OOM kill) loses nothing that `put()` returned for; a power cut (not a process
crash) can lose the lines not yet acknowledged by a reachable database, i.e. those put in the
last `flush_interval_s` plus the duration of one write (at most `timeout_s`; a write that fails
fsyncs what is waiting).
After a crash the ``.open`` segment is cut back to its last complete line and sealed. A batch
acknowledged just before a crash but not yet deleted is sent again (at-least-once; InfluxDB
overwrites identical points).

Bound: when more than `max_outbox_lines` wait, whole oldest segments are deleted, sparing the
(at most two) batches in flight at that moment; the exact number of lines lost goes to
`on_drop` and the `dropped` counter. Segments hold at most 1/8 of the bound, so dropping is
fine-grained.

InfluxDB 1.8: use its /api/v2/write compatibility, i.e. bucket ``db/rp`` (or ``db``), token
``user:password`` (or empty), any org.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gzip
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService

log = logging.getLogger(__name__)

# 4xx answers that mean "this data will never be accepted": retrying would block the queue forever.
_REJECTED_STATUS: Final = frozenset({400, 413, 422})


@dataclass(slots=True)
class _Segment:
    seq: int
    path: Path
    lines: int
    synced: bool = False


class Outbox:
    """Append-only segment files of lines on disk; not thread-safe: use from the event loop."""

    def __init__(self, directory: Path, *, max_lines: int, segment_lines: int) -> None:
        if max_lines < 1 or segment_lines < 1:
            raise ValueError("max_lines and segment_lines must be positive")
        self.directory = directory
        self.max_lines = max_lines
        self.segment_lines = segment_lines
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise RuntimeError(f"outbox {directory} is in use by another process") from None
        self._sealed: deque[_Segment] = deque()
        self._inflight = 0  # segments at the head of _sealed being delivered; never dropped
        self._sealed_lines = 0
        self._open_fd: int | None = None
        self._open_seq = 0
        self._open_lines = 0
        self._open_since = 0.0
        self._recover()

    def _recover(self) -> None:
        found: list[tuple[int, Path, int | None]] = []
        for path in self.directory.iterdir():
            if path.suffix == ".seg":
                seq_text, _, lines_text = path.stem.partition("-")
                found.append((int(seq_text), path, int(lines_text)))
            elif path.suffix == ".open":
                found.append((int(path.stem), path, None))
        found.sort()
        for seq, path, lines in found:
            if lines is None:
                lines = self._repair(path)
                if lines == 0:
                    path.unlink()
                    continue
                sealed = path.with_name(f"{seq:016d}-{lines}.seg")
                path.rename(sealed)
                path = sealed
            self._sealed.append(_Segment(seq, path, lines))
            self._sealed_lines += lines
        self._open_seq = found[-1][0] + 1 if found else 1

    @staticmethod
    def _repair(path: Path) -> int:
        """Cut an unsealed segment back to its last complete line; its line count."""
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            log.warning("outbox %s: dropping %d bytes of a line cut by a crash", path.name, len(data) - keep)
            os.truncate(path, keep)
        return data.count(b"\n", 0, keep)

    @property
    def depth(self) -> int:
        """Lines waiting for delivery (sealed, in flight and open)."""
        return self._sealed_lines + self._open_lines

    @property
    def ready(self) -> bool:
        """Sealed segments wait for delivery."""
        return bool(self._sealed)

    @property
    def open_lines(self) -> int:
        """Lines in the open segment (not sealed yet)."""
        return self._open_lines

    @property
    def open_age_s(self) -> float:
        """Seconds since the first line went into the open segment (0 when it is empty)."""
        return time.monotonic() - self._open_since if self._open_lines else 0.0

    def append(self, lines: list[str]) -> int:
        """Write complete lines; the number of old lines dropped to stay within the bound."""
        dropped = 0
        start = 0
        while start < len(lines):
            room = self.segment_lines - self._open_lines
            chunk = lines[start : start + room]
            start += len(chunk)
            data = ("\n".join(chunk) + "\n").encode()
            if data.count(b"\n") != len(chunk):
                raise ValueError("a line-protocol line must not contain a newline")
            self._write(data, len(chunk))
            if self._open_lines >= self.segment_lines:
                self.seal()
            dropped += self._enforce_bound()
        return dropped

    def _write(self, data: bytes, lines: int) -> None:
        if self._open_fd is None:
            path = self.directory / f"{self._open_seq:016d}.open"
            self._open_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._open_since = time.monotonic()
        view = memoryview(data)
        while view:
            view = view[os.write(self._open_fd, view) :]
        self._open_lines += lines

    def seal(self) -> None:
        """Close the open segment and queue it for delivery."""
        if self._open_fd is None:
            return
        os.close(self._open_fd)
        self._open_fd = None
        seq = self._open_seq
        path = self.directory / f"{seq:016d}-{self._open_lines}.seg"
        os.rename(self.directory / f"{seq:016d}.open", path)
        self._sealed.append(_Segment(seq, path, self._open_lines))
        self._sealed_lines += self._open_lines
        self._open_seq += 1
        self._open_lines = 0

    def _enforce_bound(self) -> int:
        dropped = 0
        while self.depth > self.max_lines and len(self._sealed) > self._inflight:
            victim = self._sealed[self._inflight]
            del self._sealed[self._inflight]
            self._sealed_lines -= victim.lines
            dropped += victim.lines
            victim.path.unlink(missing_ok=True)
        return dropped

    def take(self, max_lines: int) -> list[_Segment]:
        """Mark the oldest sealed segments not yet in flight (up to max_lines, at least one) in flight."""
        batch: list[_Segment] = []
        total = 0
        for i in range(self._inflight, len(self._sealed)):
            seg = self._sealed[i]
            if batch and total + seg.lines > max_lines:
                break
            batch.append(seg)
            total += seg.lines
        self._inflight += len(batch)
        return batch

    def release(self) -> None:
        """Nothing in flight was delivered: it may be retried, or dropped to keep the bound."""
        self._inflight = 0

    def commit(self, segments: int) -> int:
        """The oldest `segments` in flight were delivered: delete them; the number of lines they held."""
        if segments > self._inflight:
            raise RuntimeError("committing segments that are not in flight")
        lines = 0
        for _ in range(segments):
            seg = self._sealed.popleft()
            lines += seg.lines
            seg.path.unlink(missing_ok=True)
        self._sealed_lines -= lines
        self._inflight -= segments
        return lines

    def unsynced(self) -> list[_Segment]:
        """Sealed segments not yet fsynced (marked synced now; fsync them with `fsync`)."""
        pending = [seg for seg in self._sealed if not seg.synced]
        for seg in pending:
            seg.synced = True
        return pending

    def fsync(self, segments: Iterable[_Segment]) -> None:
        """fsync segment files and the directory (thread-safe: touches only the files)."""
        for seg in segments:
            # A segment dropped meanwhile needs no sync.
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(seg.path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @staticmethod
    def read(segments: Iterable[_Segment]) -> bytes:
        """The lines of segments in order (thread-safe: in-flight segments are never deleted)."""
        return b"".join(seg.path.read_bytes() for seg in segments)

    def close(self) -> None:
        """Seal what is open, fsync everything and release the directory."""
        self.seal()
        self.fsync(self._sealed)
        os.close(self._lock_fd)


class TelemetrySink:
    """Batched, gzip-compressed, ordered delivery of line protocol to InfluxDB via a disk outbox."""

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        outbox_dir: Path,
        *,
        max_outbox_lines: int,
        batch_lines: int = 5000,
        flush_interval_s: float = 0.05,
        on_drop: Callable[[int], None],
        timeout_s: float = 10.0,
        max_backoff_s: float = 10.0,
    ) -> None:
        if batch_lines < 1 or flush_interval_s <= 0:
            raise ValueError("batch_lines and flush_interval_s must be positive")
        # Segments small against the bound keep "drop the oldest" fine-grained.
        segment_lines = max(1, min(batch_lines, max_outbox_lines // 8))
        self._outbox = Outbox(outbox_dir, max_lines=max_outbox_lines, segment_lines=segment_lines)
        self._org = org
        self._bucket = bucket
        self._batch_lines = batch_lines
        self._flush_interval_s = flush_interval_s
        self._on_drop = on_drop
        self._max_backoff_s = max_backoff_s
        # Retries are ours (the outbox), so the client's own are off.
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000), retries=False)
        # The client's WriteService (what its WriteApi calls) with our own gzip (see _Batch).
        self._write_service = WriteService(self._client.api_client)  # type: ignore[no-untyped-call]
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._stopping = False
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self._last_write = 0.0  # monotonic start of the last write
        self.writes = 0
        self.written = 0
        self.dropped = 0
        self.rejected = 0
        self.retries = 0

    @property
    def outbox_depth(self) -> int:
        """Lines not yet acknowledged by the database."""
        return self._outbox.depth

    def put(self, line: str) -> None:
        """Queue one line (durable against a process crash on return); call from the event loop."""
        self._account(self._outbox.append([line]))

    def put_many(self, lines: Iterable[str]) -> None:
        """Queue lines in order; call from the event loop."""
        batch = list(lines)
        if batch:
            self._account(self._outbox.append(batch))

    def _account(self, dropped: int) -> None:
        self._wake.set()  # something waits: an idle writer takes it (cheap when already set)
        if dropped:
            self._report_drop(dropped)

    def _report_drop(self, lines: int) -> None:
        self.dropped += lines
        log.warning("telemetry outbox: dropped %d lines (total %d)", lines, self.dropped)
        try:
            self._on_drop(lines)
        except Exception:
            log.exception("telemetry on_drop callback failed")

    async def start(self) -> None:
        """Start the background writer (delivers what a previous run left in the outbox first)."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="telemetry-sink")

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Deliver what can be delivered within drain_timeout_s, keep the rest on disk, close."""
        if self._task is not None:
            self._outbox.seal()
            self._drained.clear()
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), drain_timeout_s)
            self._stopping = True
            self._wake.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._outbox.release()
        await asyncio.to_thread(self._outbox.close)
        await asyncio.to_thread(self._client.close)

    async def _run(self) -> None:
        # Two stages: while one batch is being posted the next is read and compressed, so
        # gzip time hides behind the database's; posts stay strictly one after another.
        backoff_s = 0.0
        ready: _Batch | None = None
        while not self._stopping:
            prepared: asyncio.Task[_Batch] | None = None
            try:
                if ready is None:
                    segments = self._outbox.take(self._batch_lines)
                    if not segments:
                        if not self._outbox.open_lines:
                            await self._idle()
                            continue
                        # Something waits and no write is in flight: write it now, or once the
                        # interval since the last write started has passed.
                        wait_s = self._last_write + self._flush_interval_s - time.monotonic()
                        if wait_s > 0:
                            await asyncio.sleep(wait_s)
                        self._outbox.seal()
                        continue
                    ready = await asyncio.to_thread(_Batch.prepare, segments)
                following = self._outbox.take(self._batch_lines)
                if following:
                    prepared = asyncio.create_task(asyncio.to_thread(_Batch.prepare, following))
                delivered = await self._deliver(ready)
                ready = await prepared if prepared is not None else None
            except OSError:
                # The outbox directory itself failed (disk full, removed): keep trying, loudly.
                log.exception("telemetry outbox: I/O error")
                delivered = False
            finally:
                if prepared is not None and not prepared.done():
                    prepared.cancel()
            if delivered:
                backoff_s = 0.0
                continue
            ready = None
            self.retries += 1
            self._outbox.release()
            await asyncio.to_thread(self._outbox.fsync, self._outbox.unsynced())
            backoff_s = min(max(backoff_s * 2, 0.25), self._max_backoff_s)
            await asyncio.sleep(backoff_s)

    async def _idle(self) -> None:
        """Nothing waits: sleep until `put` brings lines (or `stop` wakes the writer)."""
        if not self._outbox.depth:
            self._drained.set()
        self._wake.clear()
        await self._wake.wait()

    def _post(self, body: bytes) -> None:
        self._write_service.post_write(  # type: ignore[no-untyped-call]
            org=self._org,
            bucket=self._bucket,
            body=body,
            precision="ns",
            content_encoding="gzip",
            content_type="text/plain; charset=utf-8",
        )

    async def _deliver(self, batch: _Batch) -> bool:
        """Send one batch; True when it left the outbox (written, or rejected for good)."""
        self._last_write = time.monotonic()
        self.writes += 1
        try:
            await asyncio.to_thread(self._post, batch.gzipped)
        except ApiException as exc:
            if exc.status not in _REJECTED_STATUS:
                self._failed(f"HTTP {exc.status}")
                return False
            self._failing = False
            lines = self._outbox.commit(batch.segments)
            self.rejected += lines
            log.error("telemetry write rejected (HTTP %s): %s", exc.status, (exc.body or "")[:300])
            self._report_drop(lines)
            return True
        except Exception as exc:
            self._failed(str(exc))
            return False
        if self._failing:
            self._failing = False
            log.warning("telemetry writes succeed again; %d lines waiting", self._outbox.depth)
        self.written += self._outbox.commit(batch.segments)
        return True

    def _failed(self, reason: str) -> None:
        # Logged when writes start failing, not on every retry of an outage.
        if not self._failing:
            self._failing = True
            log.warning("telemetry write failed (%s); keeping lines in the outbox and retrying", reason)


@dataclass(frozen=True, slots=True)
class _Batch:
    segments: int
    gzipped: bytes

    @classmethod
    def prepare(cls, segments: list[_Segment]) -> _Batch:
        # Level 1: WriteApi's enable_gzip uses level 9, ~10 ms per 5,000 lines against ~1 ms here
        # for a body ~25 % larger.
        return cls(len(segments), gzip.compress(Outbox.read(segments), compresslevel=1))
