"""The bus's pure parts: batch codec, server list, epoch fence, disk buffer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.types import DeviceStatus, Quality, Reading
from service.bus.protocol import Batch, DiskBuffer, EpochFence, decode_batch, encode_batch
from service.config.settings import Settings, bus_servers

T0 = datetime(2026, 7, 15, 2, 0, 0, 123456, tzinfo=UTC)


def _batch(seq: int = 1, epoch: int = 5, n: int = 3) -> Batch:
    items: list[Reading | DeviceStatus] = [
        Reading(device="meter-grid-a", point="import_energy", value=1234.5 + i, unit="kWh", ts=T0) for i in range(n)
    ]
    return Batch(site="hq", collector="edge-1", epoch=epoch, seq=seq, dropped=0, items=tuple(items))


def test_round_trip_keeps_order_timestamps_quality_and_statuses() -> None:
    items = (
        Reading(device="m", point="p", value=1.5, unit="W", ts=T0),
        Reading(device="m", point="q", value=None, unit="V", ts=T0, quality=Quality.bad),
        DeviceStatus(device="m", online=False, ts=T0, reason="timeout"),
        Reading(device="r", point="state", value="ON", unit="", ts=T0),
        Reading(device="r", point="occupancy", value=True, unit="", ts=T0),
    )
    batch = Batch(site="hq", collector="c", epoch=7, seq=42, dropped=11, items=items)
    back = decode_batch(encode_batch(batch))
    assert back == batch
    assert back.items[0].ts == T0  # microseconds kept
    assert back.msg_id == "hq:c:7:42"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"not json", "not JSON"),
        (b'{"v": 99}', "format 99"),
        (b'{"v": 1, "site": "hq"}', "malformed"),
        (b'{"v": 1, "site": "hq", "c": "c", "e": 1, "n": 1, "i": [["x"]]}', "unknown kind"),
    ],
)
def test_bad_batches_are_named(data: bytes, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        decode_batch(data)


@pytest.mark.parametrize(
    ("url", "servers", "error"),
    [
        ("nats://127.0.0.1:4222", ["nats://127.0.0.1:4222"], None),
        ("nats://a:4222, nats://b:4222,", ["nats://a:4222", "nats://b:4222"], None),
        ("tls://a:4222", ["tls://a:4222"], None),
        ("http://a:4222", None, "entry 1"),
        ("nats://a:1,mqtt://b:1", None, "entry 2"),
        (",", None, "no server"),
    ],
)
def test_bus_url(url: str, servers: list[str] | None, error: str | None) -> None:
    if error is None:
        assert bus_servers(url) == servers
    else:
        with pytest.raises(ValueError, match=error):
            bus_servers(url)


def test_settings_name_a_bad_bus_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATTKEEPER_BUS_URL", "redis://x:1")
    with pytest.raises(ValueError, match="bus_url"):
        Settings(_env_file=None)
    monkeypatch.setenv("WATTKEEPER_BUS_URL", "nats://127.0.0.1:4222")
    assert Settings(_env_file=None).bus_url == "nats://127.0.0.1:4222"
    monkeypatch.delenv("WATTKEEPER_BUS_URL")
    assert Settings(_env_file=None).bus_url is None


def test_fence_refuses_an_older_collector_lease() -> None:
    fence = EpochFence()
    assert fence.admit(_batch(epoch=5))
    assert fence.admit(_batch(epoch=5, seq=2))
    assert fence.admit(_batch(epoch=9, seq=1))  # a new collector took the site
    assert not fence.admit(_batch(epoch=5, seq=3))  # the old one's buffer, forwarded late
    assert fence.fenced == 1
    assert fence.epoch == 9


def test_buffer_keeps_order_and_survives_a_restart(tmp_path: Path) -> None:
    buf = DiskBuffer(tmp_path, max_bytes=1_000_000)
    for seq in (1, 2, 3):
        assert buf.put(seq, encode_batch(_batch(seq)), 3)
    again = DiskBuffer(tmp_path, max_bytes=1_000_000)
    assert len(again) == 3
    assert again.next_seq == 4
    head = again.oldest()
    assert head is not None
    assert head[0] == 1
    assert decode_batch(head[1]).seq == 1
    again.remove(1)
    assert again.oldest() is not None and again.oldest()[0] == 2  # type: ignore[index]


@pytest.mark.parametrize(("policy", "kept"), [("drop_oldest", [3, 4]), ("drop_newest", [1, 2])])
def test_full_buffer_drops_by_policy_and_counts_readings(tmp_path: Path, policy: str, kept: list[int]) -> None:
    one = len(encode_batch(_batch(1)))
    buf = DiskBuffer(tmp_path, max_bytes=2 * one + 10, policy=policy)  # type: ignore[arg-type]
    for seq in (1, 2, 3, 4):
        buf.put(seq, encode_batch(_batch(seq)), 3)
    assert sorted(int(p.stem) for p in tmp_path.glob("*.batch")) == kept
    assert buf.dropped == 6  # two batches of three readings
    assert buf.size <= buf.max_bytes
