"""Scale-out over NATS JetStream: edge collectors publish readings, cores own sites by lease.

See docs/scale-out.md. Only JetStream features of nats-server 2.9 are used: streams with file
storage, the `Nats-Msg-Id` duplicate window, durable pull consumers with explicit acks, and
key-value buckets with a bucket TTL (no per-message TTL).

- Readings of site S travel on `wk.S.readings` in the deployment's stream (one per deployment),
  batched; each batch carries the collector's lease epoch and a sequence number.
- A collector holds `S` in the `wk_collectors` bucket; a core holds `S` in `wk_owners`. A holder
  renews every lease_s / 3; a holder that dies loses the key when the bucket TTL (lease_s) ends.
- Commands for site S are requests on `wk.S.commands`, answered by the collector holding S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from drivers.types import CommandResult, DeviceStatus, Quality, Reading, Value
from service.config.settings import bus_servers

log = logging.getLogger(__name__)

OWNERS_BUCKET = "wk_owners"
COLLECTORS_BUCKET = "wk_collectors"
FORMAT = 1  # the batch encoding's version
BUFFER_SUFFIX = ".batch"

Item = Reading | DeviceStatus
BufferPolicy = Literal["drop_oldest", "drop_newest"]


def readings_subject(site: str) -> str:
    """The subject a site's readings travel on."""
    return f"wk.{site}.readings"


def commands_subject(site: str) -> str:
    """The subject a site's commands are requested on."""
    return f"wk.{site}.commands"


def snapshot_subject(site: str) -> str:
    """The subject a new owner asks the site's collector on for the latest value of every point."""
    return f"wk.{site}.snapshot"


async def cancel_task(task: asyncio.Task[Any], *, tries: int = 50) -> None:
    """Cancel a task and wait for it to end; again when a library swallowed the cancellation
    (nats-py's fetch can), so a stop never hangs."""
    for _ in range(tries):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if task.done() and not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()


# -- batch codec (pure) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """One message on `wk.<site>.readings`."""

    site: str
    collector: str
    epoch: int  # the collector lease's revision when the collector took it (monotonic per site)
    seq: int  # the collector's batch number (monotonic per collector data directory)
    dropped: int  # readings the collector's buffer has dropped since it started (running total)
    items: tuple[Item, ...]

    @property
    def msg_id(self) -> str:
        """JetStream de-duplication id: a batch sent twice (lost PubAck) is stored once."""
        return f"{self.site}:{self.collector}:{self.epoch}:{self.seq}"


def _us(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000)


def _ts(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def encode_batch(batch: Batch) -> bytes:
    """A batch as compact JSON (orjson): readings keep their own timestamp and quality."""
    rows: list[list[Any]] = []
    for item in batch.items:
        if isinstance(item, Reading):
            rows.append(["r", item.device, item.point, item.value, item.unit, _us(item.ts), item.quality.value])
        else:
            rows.append(["s", item.device, item.online, _us(item.ts), item.reason])
    return orjson.dumps(
        {
            "v": FORMAT,
            "site": batch.site,
            "c": batch.collector,
            "e": batch.epoch,
            "n": batch.seq,
            "d": batch.dropped,
            "i": rows,
        }
    )


def decode_batch(data: bytes) -> Batch:
    """The inverse of encode_batch; ValueError naming what is wrong."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"batch is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != FORMAT:
        raise ValueError(f"batch format {doc.get('v') if isinstance(doc, dict) else None!r}, expected {FORMAT}")
    items: list[Item] = []
    try:
        for n, row in enumerate(doc["i"]):
            kind = row[0]
            if kind == "r":
                _, device, point, value, unit, us, quality = row
                items.append(
                    Reading(device=device, point=point, value=value, unit=unit, ts=_ts(us), quality=Quality(quality))
                )
            elif kind == "s":
                _, device, online, us, reason = row
                items.append(DeviceStatus(device=device, online=bool(online), ts=_ts(us), reason=reason))
            else:
                raise ValueError(f"item {n}: unknown kind {kind!r}")
        return Batch(
            site=str(doc["site"]),
            collector=str(doc["c"]),
            epoch=int(doc["e"]),
            seq=int(doc["n"]),
            dropped=int(doc.get("d", 0)),
            items=tuple(items),
        )
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"batch is malformed: {exc!r}") from None


@dataclass(slots=True)
class EpochFence:
    """Which batches a core applies: never one of a collector lease older than one already applied
    (a collector that lost its lease and came back with a buffer full of readings is fenced off)."""

    epoch: int = 0
    fenced: int = 0  # batches refused

    def admit(self, batch: Batch) -> bool:
        if batch.epoch < self.epoch:
            self.fenced += 1
            return False
        self.epoch = batch.epoch
        return True


# -- disk buffer ---------------------------------------------------------------------------------


class DiskBuffer:
    """A bounded, ordered buffer of encoded batches on disk: one file per batch, named by its number.

    Every batch goes through it (written before it is published, removed once JetStream has stored
    it), so a batch is never published ahead of an older one and survives a collector restart. When
    the buffer holds `max_bytes`, `drop_oldest` removes the oldest batches to make room and
    `drop_newest` refuses the new one; the readings so dropped are counted in `dropped`.
    """

    def __init__(self, directory: Path, *, max_bytes: int, policy: BufferPolicy = "drop_oldest") -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.policy = policy
        self.dropped = 0
        directory.mkdir(parents=True, exist_ok=True)
        self._files: dict[int, tuple[int, int]] = {}  # seq -> (bytes, readings)
        for path in directory.glob(f"*{BUFFER_SUFFIX}"):
            with contextlib.suppress(ValueError, OSError):
                data = path.read_bytes()
                self._files[int(path.stem)] = (len(data), len(decode_batch(data).items))
        self.size = sum(b for b, _ in self._files.values())

    @property
    def next_seq(self) -> int:
        return max(self._files, default=0) + 1

    def __len__(self) -> int:
        return len(self._files)

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{BUFFER_SUFFIX}"

    def make_room(self, size: int) -> None:
        """drop_oldest: remove the oldest batches until `size` more bytes fit."""
        while self.policy == "drop_oldest" and self._files and self.size + size > self.max_bytes:
            oldest = min(self._files)
            self.dropped += self._files[oldest][1]
            self.remove(oldest)

    def put(self, seq: int, data: bytes, readings: int) -> bool:
        """Keep a batch; False when the policy dropped it (drop_newest, buffer full)."""
        self.make_room(len(data))
        if self._files and self.size + len(data) > self.max_bytes:
            self.dropped += readings
            return False
        tmp = self._path(seq).with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(self._path(seq))
        self._files[seq] = (len(data), readings)
        self.size += len(data)
        return True

    def oldest(self) -> tuple[int, bytes] | None:
        if not self._files:
            return None
        seq = min(self._files)
        return seq, self._path(seq).read_bytes()

    def remove(self, seq: int) -> None:
        entry = self._files.pop(seq, None)
        if entry is not None:
            self.size -= entry[0]
        with contextlib.suppress(FileNotFoundError):
            self._path(seq).unlink()


# -- connection, stream, leases ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BusConfig:
    """What the bus parts need from the settings."""

    url: str
    stream: str = "WATTKEEPER"
    lease_s: float = 10.0
    buffer_max_bytes: int = 64 * 1024 * 1024
    buffer_policy: BufferPolicy = "drop_oldest"
    batch_s: float = 0.2
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")


async def connect(config: BusConfig, *, name: str) -> Any:
    """A NATS connection that reconnects for ever (raises when the first connect fails)."""
    import nats

    return await nats.connect(
        servers=bus_servers(config.url),
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        connect_timeout=2,
        ping_interval=max(1, int(config.lease_s / 3)),
        max_outstanding_pings=2,
    )


async def ensure_stream(js: Any, config: BusConfig) -> None:
    """The deployment's readings stream (file storage); left as it is when it exists."""
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig

    try:
        await js.stream_info(config.stream)
    except Exception:
        await js.add_stream(
            StreamConfig(
                name=config.stream,
                subjects=["wk.*.readings"],
                storage=StorageType.FILE,
                retention=RetentionPolicy.LIMITS,
                max_age=7 * 24 * 3600,  # a week of readings kept for replay
                duplicate_window=120,
            )
        )


async def lease_bucket(js: Any, bucket: str, lease_s: float) -> Any:
    """A key-value bucket whose keys expire lease_s after their last write (bucket TTL)."""
    from nats.js.api import StorageType
    from nats.js.errors import BucketNotFoundError

    try:
        kv = await js.key_value(bucket)
    except BucketNotFoundError:
        with contextlib.suppress(Exception):
            return await js.create_key_value(bucket=bucket, ttl=lease_s, history=1, storage=StorageType.FILE)
        kv = await js.key_value(bucket)
    with contextlib.suppress(Exception):
        ttl = (await kv.status()).ttl
        if ttl is not None and abs(ttl - lease_s) > 0.01:
            # The bucket's TTL is the lease: the first process made it; every one must agree.
            log.error(
                "bucket %s expires keys after %.3g s but WATTKEEPER_BUS_LEASE_S is %.3g s: leases last %.3g s",
                bucket,
                ttl,
                lease_s,
                ttl,
            )
    return kv


class Lease:
    """One key of a lease bucket, held by `holder`: create to take, compare-and-set to renew."""

    def __init__(self, kv: Any, key: str, holder: str) -> None:
        self.kv = kv
        self.key = key
        self.holder = holder
        self.revision = 0
        self.epoch = 0  # the revision at which it was taken

    async def acquire(self) -> bool:
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            self.revision = await self.kv.create(self.key, self.holder.encode())
        except KeyWrongLastSequenceError:
            return False
        self.epoch = self.revision
        return True

    async def renew(self) -> bool:
        """Renew; False when the lease was lost (expired and taken, or taken)."""
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            self.revision = await self.kv.update(self.key, self.holder.encode(), last=self.revision)
        except KeyWrongLastSequenceError:
            # A renewal sent while the bus was away may have been stored after all (the client
            # sends what it buffered when it reconnects): the key is still ours at a newer revision.
            try:
                entry = await self.kv.get(self.key)
            except Exception:
                return False
            if entry.value is None or bytes(entry.value).decode() != self.holder or entry.revision is None:
                return False
            self.revision = await self.kv.update(self.key, self.holder.encode(), last=entry.revision)
        return True

    async def holder_now(self) -> str | None:
        with contextlib.suppress(Exception):
            entry = await self.kv.get(self.key)
            return bytes(entry.value).decode() if entry.value else None
        return None

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            await self.kv.delete(self.key, last=self.revision)


# -- command request / reply ---------------------------------------------------------------------


def encode_command(device: str, point: str, value: Value, timeout_s: float) -> bytes:
    return orjson.dumps({"device": device, "point": point, "value": value, "timeout_s": timeout_s})


def encode_result(r: CommandResult) -> bytes:
    return orjson.dumps(
        {
            "device": r.device,
            "point": r.point,
            "requested": r.requested,
            "status": r.status,
            "observed": r.observed,
            "detail": r.detail,
        }
    )


def decode_result(data: bytes) -> CommandResult:
    doc = orjson.loads(data)
    status = doc["status"]
    if status not in ("confirmed", "failed", "refused"):
        raise ValueError(f"unknown command status {status!r}")
    return CommandResult(
        device=doc["device"],
        point=doc["point"],
        requested=doc["requested"],
        status=status,
        observed=doc.get("observed"),
        detail=doc.get("detail", ""),
    )


class BusCommands:
    """The control path's hub on a core: a command goes to the site's collector as a request."""

    def __init__(self, site: str, nc: Callable[[], Any]) -> None:
        self.site = site
        self._nc = nc

    async def command(self, device_id: str, point: str, value: Value, *, timeout_s: float = 5.0) -> CommandResult:
        nc = self._nc()
        if nc is None:
            return CommandResult(
                device=device_id, point=point, requested=value, status="failed", detail="the bus is not connected"
            )
        try:
            reply = await nc.request(
                commands_subject(self.site), encode_command(device_id, point, value, timeout_s), timeout=timeout_s + 2
            )
            return decode_result(reply.data)
        except Exception as exc:
            detail = f"no answer from the collector of site '{self.site}' ({type(exc).__name__}); outcome unknown"
            return CommandResult(device=device_id, point=point, requested=value, status="failed", detail=detail)


# -- the core's side: own sites by lease, consume their readings ---------------------------------

Apply = Callable[[Sequence[Item]], Awaitable[None]]


@dataclass(slots=True)
class OwnerStats:
    batches: int = 0
    readings: int = 0
    fenced: int = 0
    duplicates: int = 0
    acquired_at: datetime | None = None
    collector_dropped: int = 0


class SiteOwner:
    """Takes the site's lease when free, then consumes `wk.<site>.readings` through the durable
    consumer `core-<site>`: each batch is applied (state, rules, alarms stored, energy checkpoint)
    and only then acknowledged. Losing the lease stops consumption at once and calls `on_lost`.

    On taking a site over, the consumer is re-created to start right after its ack floor, so the
    new owner reads at once from the last acknowledged batch (no wait for an ack timeout).
    """

    def __init__(
        self,
        site: str,
        config: BusConfig,
        *,
        apply: Apply,
        on_acquired: Callable[[], Awaitable[None]],
        on_lost: Callable[[], Awaitable[None]],
        on_dropped: Callable[[int], None] | None = None,
        position: tuple[Callable[[], Awaitable[int]], Callable[[int], Awaitable[None]]] | None = None,
    ) -> None:
        self.site = site
        self.config = config
        self.apply = apply
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.on_dropped = on_dropped
        self.position = position
        self.nc: Any = None
        self.owner = False
        self.fence = EpochFence()
        self.stats = OwnerStats()
        self.applied_seq = 0  # the stream sequence of the last batch applied
        self._task: asyncio.Task[None] | None = None
        self._lease: Lease | None = None

    @property
    def durable(self) -> str:
        return f"core-{self.site}"

    async def start(self) -> None:
        self.nc = await connect(self.config, name=f"wattkeeper-core-{self.config.holder}")
        js = self.nc.jetstream()
        await ensure_stream(js, self.config)
        kv = await lease_bucket(js, OWNERS_BUCKET, self.config.lease_s)
        self._lease = Lease(kv, self.site, self.config.holder)
        self._task = asyncio.create_task(self._run(), name=f"bus-owner-{self.site}")

    async def halt(self) -> None:
        """Stop taking batches; the lease is kept until stop() (the core writes its last state first)."""
        if self._task is not None:
            await cancel_task(self._task)
            self._task = None

    async def stop(self) -> None:
        await self.halt()
        if self.owner and self._lease is not None:
            await self._lease.release()  # a clean stop hands the site over at once
        self.owner = False
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()

    async def _run(self) -> None:
        assert self._lease is not None
        poll_s = self.config.lease_s / 3
        while not self.owner:
            try:
                if await self._lease.acquire():
                    break
            except Exception as exc:
                log.warning("site %s: lease not reachable (%s)", self.site, exc)
            await asyncio.sleep(poll_s)
        self.owner = True
        self.stats.acquired_at = datetime.now(UTC)
        log.info("site %s: owned by this core (%s)", self.site, self.config.holder)
        await self.on_acquired()
        try:
            await self._consume(poll_s)
        except _LeaseLost:
            self.owner = False
            log.error("site %s: lease lost; this core stops applying its readings", self.site)
            await self.on_lost()

    async def _subscribe(self) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        js = self.nc.jetstream()
        start = 0
        with contextlib.suppress(Exception):
            info = await js.consumer_info(self.config.stream, self.durable)
            start = int(info.ack_floor.stream_seq or 0)
            await js.delete_consumer(self.config.stream, self.durable)
        if self.position is not None:
            start = max(start, await self.position[0]())
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=max(30.0, 3 * self.config.lease_s),
            max_ack_pending=256,
            filter_subject=readings_subject(self.site),
        )
        if start > 0:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = start + 1
        else:
            config.deliver_policy = DeliverPolicy.ALL
        return await js.pull_subscribe(
            readings_subject(self.site), durable=self.durable, stream=self.config.stream, config=config
        )

    async def _take_again(self, applied_seq: int) -> bool:
        """After the lease expired (the bus was away longer than lease_s): take it again when no
        other core took it meanwhile, i.e. nobody applied a batch of the site since this core did."""
        assert self._lease is not None
        try:
            if not await self._lease.acquire():
                return False
            if self.position is not None and await self.position[0]() != applied_seq:
                await self._lease.release()
                return False
        except Exception as exc:
            log.warning("site %s: lease not taken again (%s)", self.site, exc)
            return False
        log.warning("site %s: lease expired while the bus was away; taken again", self.site)
        return True

    async def _consume(self, poll_s: float) -> None:
        from nats.errors import TimeoutError as NatsTimeout

        assert self._lease is not None
        loop = asyncio.get_running_loop()
        sub: Any = await self._subscribe()
        with contextlib.suppress(Exception):
            await self.nc.publish(snapshot_subject(self.site), b"")
        renew_at = loop.time() + poll_s
        self.applied_seq = await self.position[0]() if self.position is not None else 0
        while True:
            if loop.time() >= renew_at:
                try:
                    renewed = await self._lease.renew()
                except Exception as exc:
                    # The bus is away: the lease may expire meanwhile; renewal will tell.
                    log.warning("site %s: lease renewal failed (%s)", self.site, exc)
                    renewed = True
                if not renewed and not await self._take_again(self.applied_seq):
                    raise _LeaseLost
                renew_at = loop.time() + poll_s
            if sub is None:
                # After a failure: the consumer again, from the last batch acknowledged or applied.
                try:
                    sub = await self._subscribe()
                except Exception as exc:
                    log.warning("site %s: consumer not re-created yet (%s)", self.site, exc)
                    await asyncio.sleep(min(poll_s, 1.0))
                    continue
            try:
                msgs = await sub.fetch(64, timeout=min(poll_s, 1.0))
            except (NatsTimeout, TimeoutError):
                continue
            except Exception as exc:
                log.warning("site %s: fetch failed (%s)", self.site, exc)
                await asyncio.sleep(min(poll_s, 1.0))
                continue
            try:
                for msg in msgs:
                    await self._take(msg)
            except Exception:
                # The store or the bus failed mid-batch: nothing after it is applied out of order;
                # the rest comes again from the consumer re-created at the last position.
                log.exception("site %s: a batch could not be applied or acknowledged; trying again", self.site)
                sub = None
                await asyncio.sleep(min(poll_s, 1.0))

    async def _take(self, msg: Any) -> None:
        """Apply one message, record its position (applied_seq), acknowledge it."""
        seq = int(msg.metadata.sequence.stream)
        if seq <= self.applied_seq:
            self.stats.duplicates += 1  # applied before the last ack was lost
            await msg.ack()
            return
        try:
            batch = decode_batch(msg.data)
        except ValueError as exc:
            log.error("site %s: batch %d dropped: %s", self.site, seq, exc)
            self.applied_seq = seq
            await msg.term()
            return
        if batch.site == self.site and self.fence.admit(batch):
            await self.apply(batch.items)
            self.stats.readings += len(batch.items)
            if batch.dropped > self.stats.collector_dropped and self.on_dropped is not None:
                self.on_dropped(batch.dropped)
            self.stats.collector_dropped = max(self.stats.collector_dropped, batch.dropped)
        else:
            self.stats.fenced += 1
            log.warning("site %s: batch %s of an older collector lease refused", self.site, batch.msg_id)
        if self.position is not None:
            await self.position[1](seq)
        self.applied_seq = seq  # applied and recorded: an ack lost now does not apply it twice
        self.stats.batches += 1
        await msg.ack_sync()


class _LeaseLost(Exception):
    pass


# -- the collector's side ------------------------------------------------------------------------


@dataclass(slots=True)
class CollectorStats:
    batches_published: int = 0
    readings_published: int = 0
    publish_failures: int = 0
    commands: int = 0


class Collector:
    """Runs beside the drivers of one site: batches their readings into the disk buffer, forwards
    the buffer in order to JetStream, and answers the site's commands. Holds the site's collector
    lease; without it the drivers are not started (a second collector waits as a standby)."""

    def __init__(
        self,
        site: str,
        config: BusConfig,
        data_dir: Path,
        *,
        start_drivers: Callable[[], Awaitable[None]],
        command: Callable[[str, str, Value, float], Awaitable[CommandResult]],
    ) -> None:
        self.site = site
        self.config = config
        self.buffer = DiskBuffer(
            data_dir / "bus-buffer" / site, max_bytes=config.buffer_max_bytes, policy=config.buffer_policy
        )
        self.start_drivers = start_drivers
        self._command = command
        self.stats = CollectorStats()
        self.nc: Any = None
        self.lease: Lease | None = None
        self.fenced = asyncio.Event()
        self.holding = asyncio.Event()
        self._pending: list[Item] = []
        self._latest: dict[tuple[str, str], Reading] = {}
        self._statuses: dict[str, DeviceStatus] = {}
        self._seq = self.buffer.next_seq
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def emit(self, batch: Sequence[Item]) -> None:
        """The drivers' callback."""
        self._pending.extend(batch)
        for item in batch:
            if isinstance(item, Reading):
                self._latest[(item.device, item.point)] = item
            else:
                self._statuses[item.device] = item

    def snapshot(self) -> None:
        """Queue the latest value of every point and every device's link state (a key frame, sent
        in order with the rest): a core that takes the site over learns at once what MQTT devices
        reported long ago (they report on change). Timestamps are the original ones: a value that
        is old still looks old."""
        self._pending.extend(self._statuses.values())
        self._pending.extend(self._latest.values())

    async def run(self) -> None:
        """Until cancelled or fenced (then FencedError)."""
        self.nc = await self._connect_forever()
        js = self.nc.jetstream()
        await ensure_stream(js, self.config)
        kv = await lease_bucket(js, COLLECTORS_BUCKET, self.config.lease_s)
        self.lease = Lease(kv, self.site, self.config.holder)
        poll_s = self.config.lease_s / 3
        while not await self.lease.acquire():
            log.warning(
                "site %s: another collector (%s) holds the site; waiting as a standby",
                self.site,
                await self.lease.holder_now(),
            )
            await asyncio.sleep(poll_s)
        self.holding.set()
        log.info("site %s: collector lease taken (epoch %d)", self.site, self.lease.epoch)
        await self.nc.subscribe(commands_subject(self.site), cb=self._on_command)
        await self.nc.subscribe(snapshot_subject(self.site), cb=self._on_snapshot)
        await self.start_drivers()
        self._tasks = [
            asyncio.create_task(self._batch_loop(), name="collector-batch"),
            asyncio.create_task(self._forward_loop(js), name="collector-forward"),
        ]
        try:
            await self._renew_loop(poll_s)
        finally:
            for t in self._tasks:
                await cancel_task(t)
            self._cut()

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                if self.lease is not None and not self.fenced.is_set():
                    await self.lease.release()
                await self.nc.close()

    async def _connect_forever(self) -> Any:
        while True:
            try:
                return await connect(self.config, name=f"wattkeeper-collector-{self.config.holder}")
            except Exception as exc:
                log.warning("site %s: bus not reachable (%s); trying again", self.site, exc)
                await asyncio.sleep(1.0)

    async def _renew_loop(self, poll_s: float) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        assert self.lease is not None
        while True:
            await asyncio.sleep(poll_s)
            try:
                if await self.lease.renew():
                    continue
                # Expired while the bus was away: take it again if nobody else did.
                if await self.lease.acquire():
                    log.warning("site %s: collector lease taken again (epoch %d)", self.site, self.lease.epoch)
                    continue
            except KeyWrongLastSequenceError:
                pass
            except Exception as exc:
                log.warning("site %s: lease renewal failed (%s); buffering", self.site, exc)
                continue
            self.fenced.set()
            raise FencedError(f"site {self.site}: another collector took the site over")

    def _cut(self) -> None:
        """What the drivers sent since the last batch goes into the buffer."""
        if not self._pending or self.lease is None:
            return
        items, self._pending = self._pending, []
        batch = Batch(
            site=self.site,
            collector=self.config.holder,
            epoch=self.lease.epoch,
            seq=self._seq,
            dropped=self.buffer.dropped,
            items=tuple(items),
        )
        self._seq += 1
        data = encode_batch(batch)
        self.buffer.make_room(len(data))
        if self.buffer.dropped != batch.dropped:  # the drops this batch caused travel with it
            batch = replace(batch, dropped=self.buffer.dropped)
            data = encode_batch(batch)
        if self.buffer.put(batch.seq, data, len(items)):
            self._wake.set()

    async def _batch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.batch_s)
            self._cut()

    async def _forward_loop(self, js: Any) -> None:
        while True:
            head = self.buffer.oldest()
            if head is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            seq, data = head
            batch = decode_batch(data)
            try:
                await js.publish(readings_subject(self.site), data, timeout=2.0, headers={"Nats-Msg-Id": batch.msg_id})
            except Exception as exc:
                self.stats.publish_failures += 1
                log.debug("site %s: batch %d not stored yet (%s)", self.site, seq, exc)
                await asyncio.sleep(0.5)
                continue
            self.buffer.remove(seq)
            self.stats.batches_published += 1
            self.stats.readings_published += len(batch.items)

    async def _on_snapshot(self, msg: Any) -> None:
        self.snapshot()
        with contextlib.suppress(Exception):
            await msg.respond(b"ok")

    async def _on_command(self, msg: Any) -> None:
        self.stats.commands += 1
        doc: dict[str, Any] = {}
        try:
            doc = orjson.loads(msg.data)
            result = await self._command(
                str(doc["device"]), str(doc["point"]), doc.get("value"), float(doc.get("timeout_s", 5.0))
            )
        except Exception as exc:
            result = CommandResult(
                device=str(doc.get("device", "?")),
                point="?",
                requested=None,
                status="refused",
                detail=f"malformed command request: {exc}",
            )
        with contextlib.suppress(Exception):
            await msg.respond(encode_result(result))


class FencedError(RuntimeError):
    """This collector's lease was taken by another: it must stop."""
