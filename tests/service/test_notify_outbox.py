"""The notification outbox: a message queued when the process stops or dies is sent when it (or the
core that takes its site over) starts again; a sent one leaves nothing behind."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.config.site import Notifications, Webhook
from service.store.db import Store
from tests.service.conftest import Receiver
from tests.service.test_notify import T0, notifier, raised


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    await s.open()
    yield s
    await s.close()


async def _until_empty(store: Store, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if not await store.pending_notices():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"outbox still holds {await store.pending_notices()}")


async def test_queued_message_survives_a_stop_and_goes_after_the_start(receiver: Receiver, store: Store) -> None:
    """The webhook is down when the alarm comes; the process stops; the next one sends it, once."""
    hooks = Notifications(webhooks=[Webhook(url=receiver.url)])
    receiver.status = lambda n: 503
    first = notifier(hooks, outbox=store, max_attempts=100)
    await first.start()
    await first.notify(*raised())
    await receiver.wait_for(1)
    await first.stop()  # what a kill does to the queue: it is gone from memory
    ((_, channel, kept),) = await store.pending_notices()
    assert channel == first.channels[0].name and kept["body"]["id"] == "lit_empty_room:r2119"

    tried = len(receiver.requests)
    receiver.status = lambda n: 204
    second = notifier(hooks, outbox=store)
    await second.start()
    assert await second.resume_pending() == 1
    got = await receiver.wait_for(tried + 1)
    assert got[-1][1]["id"] == "lit_empty_room:r2119" and got[-1][1]["state"] == "active_unacked"
    await _until_empty(store)
    await asyncio.sleep(0.2)
    assert len(receiver.requests) == tried + 1  # once
    await second.stop()


async def test_sent_and_refused_messages_leave_nothing(receiver: Receiver, store: Store) -> None:
    """Sent, refused (4xx, not retried) and digested messages are all done with."""
    n = notifier(Notifications(webhooks=[Webhook(url=receiver.url)]), outbox=store, max_per_window=3, window_s=0.5)
    await n.start()
    for i in range(12):
        await n.notify(*raised(subject=f"r{i:03d}"))

    def alarms_sent() -> int:
        return sum(b["count"] if b.get("digest") else 1 for _, b in receiver.requests)

    for _ in range(250):
        if alarms_sent() >= 12:
            break
        await asyncio.sleep(0.02)
    assert alarms_sent() == 12 and n.channels[0].digests >= 1
    await _until_empty(store)
    await n.stop()
    receiver.status = lambda n: 400
    sent = len(receiver.requests)
    refusing = notifier(Notifications(webhooks=[Webhook(url=receiver.url)]), outbox=store)
    await refusing.start()
    await refusing.notify(*raised(subject="r999"))
    await receiver.wait_for(sent + 1)
    await _until_empty(store)
    assert refusing.channels[0].failed == 1
    await refusing.stop()


async def test_rows_of_a_channel_no_longer_configured_are_dropped(
    receiver: Receiver, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A message kept for a webhook that was removed from the site file is not sent anywhere else."""
    await store.add_notices([("webhook:gone.example", {"id": "x", "body": {}, "title": "t", "lines": []})], at=T0)
    n = notifier(Notifications(webhooks=[Webhook(url=receiver.url)]), outbox=store)
    await n.start()
    with caplog.at_level(logging.WARNING, logger="service.notify.notifier"):
        assert await n.resume_pending() == 0
    assert not await store.pending_notices() and "no longer configured" in caplog.text
    await asyncio.sleep(0.1)
    assert receiver.requests == []
    await n.stop()


async def test_store_down_still_sends_from_memory(
    receiver: Receiver, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """With the state store unreachable the message still goes out (kept in memory only), with a warning."""
    n = notifier(Notifications(webhooks=[Webhook(url=receiver.url)]), outbox=store)
    await n.start()
    await store.close()
    with caplog.at_level(logging.WARNING, logger="service.notify.notifier"):
        await n.notify(*raised())
        got = await receiver.wait_for(1)
    assert got[0][1]["id"] == "lit_empty_room:r2119" and "outbox unreachable" in caplog.text
    await n.stop()
