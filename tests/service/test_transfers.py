"""Source transfers: told from what feeds a switch's load over time (table-driven, injected time), by the
live state at the readings' timestamps, and kept by the core across a restart and sent to SSE clients."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from drivers.types import Reading, Value
from service.clock import ManualClock
from service.core import Core
from service.live.events import EventBus
from service.live.ingest import TRANSFERS_STATE
from service.live.state import GEN_AVAILABLE, GEN_BREAKER_CLOSED, MAINS_AVAILABLE, START_DEMAND, LiveState
from service.live.transfers import Transfer, TransferDetector, latest
from service.metrics import Metrics
from service.store.db import Store
from tests.service.test_state import make_site, supply_normal

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
ALLOWED_S = 10.0

# (seconds after T0, known, feeding); None feeding = the load without a source
Step = tuple[float, bool, str | None]
# (kind, from, to, lost_at s, at s)
Expected = tuple[str, str, str, float, float]


def at(seconds: float) -> datetime:
    """T0 plus seconds."""
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([(0, True, "grid-a"), (1, True, "grid-a"), (2, True, "grid-a")], [], id="steady"),
        pytest.param(
            [(0, True, "grid-a"), (1, True, None), (2.5, True, None), (4.5, True, "grid-b"), (5, True, "grid-b")],
            [("transfer", "grid-a", "grid-b", 1, 4.5)],
            id="lost-then-other-grid",
        ),
        pytest.param(
            [(0, True, "grid-a"), (1, True, None), (13.5, True, "gen-1")],
            [("transfer", "grid-a", "gen-1", 1, 13.5)],
            id="generator-too-late",
        ),
        pytest.param(
            [(0, True, "grid-b"), (40, True, None), (40.5, True, "grid-a")],
            [("retransfer", "grid-b", "grid-a", 40, 40.5)],
            id="retransfer-through-pos-0",
        ),
        pytest.param(
            [(0, True, "gen-1"), (1, True, "grid-a")],
            [("retransfer", "gen-1", "grid-a", 1, 1)],
            id="closed-transition-back-to-grid",
        ),
        pytest.param(
            [(0, True, "grid-a"), (1, True, "grid-b")],
            [("transfer", "grid-a", "grid-b", 1, 1)],
            id="change-without-a-gap-seen",
        ),
        pytest.param(
            [(0, True, "grid-a"), (1, True, None), (2, True, "grid-a")],
            [("restored", "grid-a", "grid-a", 1, 2)],
            id="same-source-back-before-the-switch-moved",
        ),
        pytest.param(
            [(0, True, None), (5, True, None), (8, True, "grid-b")],
            [],
            id="start-of-the-outage-never-seen",
        ),
        pytest.param(
            [(0, True, "grid-a"), (1, False, None), (2, True, None), (3, False, None), (5, True, "grid-b")],
            [("transfer", "grid-a", "grid-b", 2, 5)],
            id="unknown-neither-starts-nor-ends",
        ),
        pytest.param(
            [(0, False, None), (1, True, "grid-a"), (2, False, None), (3, True, "grid-a")],
            [],
            id="unknown-between-the-same-source",
        ),
        pytest.param(
            [(0, True, "grid-a"), (2, True, None), (1.8, True, "grid-b")],
            [("transfer", "grid-a", "grid-b", 2, 2)],
            id="a-reading-a-little-out-of-order",
        ),
        pytest.param(
            [(0, True, "grid-a"), (1, True, None), (4.5, True, "grid-b"), (60, True, None), (60.5, True, "grid-a")],
            [("transfer", "grid-a", "grid-b", 1, 4.5), ("retransfer", "grid-b", "grid-a", 60, 60.5)],
            id="there-and-back",
        ),
    ],
)
def test_detector(steps: list[Step], expected: list[Expected]) -> None:
    detector = TransferDetector({"ats-1": "grid-a"}, ALLOWED_S)
    seen = [
        t for s, known, feeding in steps if (t := detector.observe("ats-1", known=known, feeding=feeding, at=at(s)))
    ]
    assert [(t.kind, t.from_source, t.to_source, t.lost_at, t.at) for t in seen] == [
        (kind, src, dst, at(lost), at(back)) for kind, src, dst, lost, back in expected
    ]
    for t in seen:
        assert t.interruption_s == (t.at - t.lost_at).total_seconds()
        assert t.within_allowed is (t.interruption_s <= ALLOWED_S)
        assert (t.switch, t.allowed_interruption_s) == ("ats-1", ALLOWED_S)


def test_switches_are_followed_apart() -> None:
    detector = TransferDetector({"ats-1": "grid-a", "ats-2": "grid-c"}, ALLOWED_S)
    detector.observe("ats-1", known=True, feeding="grid-a", at=at(0))
    detector.observe("ats-2", known=True, feeding="grid-c", at=at(0))
    assert detector.observe("ats-1", known=True, feeding=None, at=at(1)) is None
    assert detector.observe("ats-2", known=True, feeding="grid-c", at=at(2)) is None
    ended = detector.observe("ats-1", known=True, feeding="grid-b", at=at(3))
    assert ended is not None and (ended.switch, ended.interruption_s) == ("ats-1", 2.0)


def test_record_round_trip_and_bad_records() -> None:
    t = Transfer(
        switch="ats-1",
        kind="transfer",
        from_source="grid-a",
        to_source="grid-b",
        lost_at=at(1),
        at=at(13.25),
        interruption_s=12.25,
        allowed_interruption_s=ALLOWED_S,
    )
    record = t.to_dict()
    assert record["within_allowed"] is False and record["interruption_s"] == 12.25
    assert Transfer.from_dict(record) == t
    assert latest([t, Transfer.from_dict({**record, "at": at(20).isoformat()})]).at == at(20)  # type: ignore[union-attr]
    assert latest([]) is None
    bad: list[dict[str, Any]] = [
        {**record, "kind": "teleport"},
        {**record, "at": "2026-03-02T02:00:13"},  # no offset
        {k: v for k, v in record.items() if k != "from_source"},
        {**record, "interruption_s": "long"},
    ]
    for b in bad:
        with pytest.raises((KeyError, TypeError, ValueError)):
            Transfer.from_dict(b)


GRID_A_LOST: dict[str, dict[str, Value]] = {"m-a": {"voltage_l1": 0.0, "power": 0.0}, "ats": {"source1_state": 0}}
ON_GRID_B: dict[str, dict[str, Value]] = {**GRID_A_LOST, "ats": {"source1_state": 0, "position": 3}}


def test_live_state_tells_transfers_at_the_readings_timestamps() -> None:
    """grid-a lost at 1 s, pos 0 while operating at 3.5 s, pos II at 4 s; then every grid lost and
    the generator on the load, and grid-a back with the AMF controller handing the load to it."""
    state = LiveState(make_site())
    supply_normal(state, at(0))
    supply_normal(state, at(1), GRID_A_LOST)
    supply_normal(state, at(3.5), {**GRID_A_LOST, "ats": {"source1_state": 0, "position": 1}})
    assert state.take_transfers() == []
    supply_normal(state, at(4), ON_GRID_B)
    [first] = state.take_transfers()
    assert (first.kind, first.from_source, first.to_source) == ("transfer", "grid-a", "grid-b")
    assert (first.lost_at, first.at, first.interruption_s, first.within_allowed) == (at(1), at(4), 3.0, True)
    assert state.take_transfers() == []  # handed over once

    all_lost: dict[str, dict[str, Value]] = {
        **ON_GRID_B,
        "m-b": {"voltage_l1": 0.0, "power": 0.0},
        "ats": {"source1_state": 0, "source2_state": 0},
    }
    supply_normal(state, at(100), all_lost)
    gen_on_load = GEN_BREAKER_CLOSED | GEN_AVAILABLE | START_DEMAND
    supply_normal(state, at(112), {**all_lost, "gs": {"engine_state": 3, "breaker_status": gen_on_load}})
    [second] = state.take_transfers()
    assert (second.kind, second.from_source, second.to_source) == ("transfer", "grid-b", "gen-1")
    assert (second.interruption_s, second.within_allowed) == (12.0, False)
    # grid-a back: the switch goes to pos I, the controller opens the generator breaker, closes the mains
    supply_normal(state, at(150), {"gs": {"engine_state": 3, "breaker_status": MAINS_AVAILABLE | 1}})
    [third] = state.take_transfers()
    assert (third.kind, third.from_source, third.to_source) == ("retransfer", "gen-1", "grid-a")
    assert third.interruption_s == 0


def supply_readings(t: datetime, changes: dict[str, dict[str, Value]] | None = None) -> list[Reading]:
    """What supply_normal feeds, as readings for Core.emit."""
    scratch = LiveState(make_site())
    supply_normal(scratch, t, changes)
    return [Reading(device=p.device, point=p.point, value=p.value, unit="", ts=t) for p in scratch.points(t)]


async def settle(core: Core) -> None:
    """Let the core's ingest loop take what was emitted."""
    for _ in range(100):
        if not core._pending:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)


async def test_core_keeps_the_last_transfer_across_a_restart_and_tells_sse(store: Store) -> None:
    site = make_site()
    clock = ManualClock(at(0))
    events = EventBus()
    core = Core(site, store=store, clock=clock, events=events, metrics=Metrics())
    await core.start()
    async with events.subscribe() as queue:
        try:
            for s, changes in ((0.0, None), (1.0, GRID_A_LOST), (4.5, ON_GRID_B)):
                clock.set(at(s))
                core.emit(supply_readings(at(s), changes))
                await settle(core)
            assert core.last_transfers["ats-1"].interruption_s == 3.5
            await core.tick()
        finally:
            await core.stop()
        supply_events = []
        while not queue.empty():
            event = queue.get_nowait()
            if event["event"] == "supply" and "transfer" in event["data"]:
                supply_events.append(event["data"])
    [sent] = supply_events
    assert sent["transfer"]["from_source"] == "grid-a" and sent["transfer"]["to_source"] == "grid-b"
    assert sent["transfer"]["within_allowed"] is True
    assert [t["position"] for t in sent["transfer_switches"]] == ["grid-b"]  # the supply view, as ever
    stored = await store.get_state(TRANSFERS_STATE)
    assert isinstance(stored, dict) and stored["ats-1"]["interruption_s"] == 3.5
    [logged] = await store.transfers(at(0), at(60))  # the transfer log the quarterly summary reads
    assert logged == stored["ats-1"]

    # a restart: the new core knows the last transfer before it has seen any reading
    again = Core(site, store=store, clock=clock, events=EventBus(), metrics=Metrics())
    await again.start()
    try:
        assert again.last_transfers == core.last_transfers
    finally:
        await again.stop()


async def test_a_stored_record_that_does_not_fit_is_passed_over(store: Store) -> None:
    site = make_site()
    good = Transfer(
        switch="ats-1",
        kind="restored",
        from_source="grid-a",
        to_source="grid-a",
        lost_at=at(0),
        at=at(2),
        interruption_s=2.0,
        allowed_interruption_s=ALLOWED_S,
    )
    await store.set_state(TRANSFERS_STATE, {"ats-1": good.to_dict(), "ats-gone": good.to_dict()}, at=at(3))
    core = Core(site, store=store, clock=ManualClock(at(5)), events=EventBus(), metrics=Metrics())
    await core.start()
    await core.stop()
    assert core.last_transfers == {"ats-1": good}  # a switch no longer on the site is dropped
    await store.set_state(TRANSFERS_STATE, {"ats-1": {**good.to_dict(), "kind": "teleport"}}, at=at(6))
    core = Core(site, store=store, clock=ManualClock(at(7)), events=EventBus(), metrics=Metrics())
    await core.start()
    await core.stop()
    assert core.last_transfers == {}
