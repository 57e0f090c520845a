"""GET /api/compliance live: a transfer of the simulated switch after its feeding grid is lost is seen
over Modbus, timed against allowed_interruption_s, sent as an SSE supply event and shown on the
dashboard's supply panel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from tests.api.conftest import Live
from tests.api.test_events import events, first


def same_transfer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two renderings of one transfer record (the API writes UTC as Z, the SSE event as +00:00)."""
    times = ("lost_at", "at")
    return {k: v for k, v in a.items() if k not in times} == {k: v for k, v in b.items() if k not in times} and all(
        datetime.fromisoformat(a[k]) == datetime.fromisoformat(b[k]) for k in times
    )


async def test_losing_the_feeding_grid_is_recorded_as_a_transfer(live: Live) -> None:
    site = live.sim.site
    switch = site.transfer_switches[0]
    allowed_s = site.site.allowed_interruption_s
    async with live.client("viewer", timeout=httpx.Timeout(10, read=60)) as c:
        before = (await c.get("/api/compliance")).json()["live"]
        assert (before["last_transfer"], before["last_transfers"]) == (None, [])
        async with c.stream("GET", "/api/events") as r:
            stream = events(r)
            await first(stream, lambda e: e[0] == "hello", 5)
            live.sim.fault("source_loss", "grid-a")
            _, supply = await first(stream, lambda e: e[0] == "supply" and "transfer" in e[1], 60)
        transfer = supply["transfer"]
        assert [t["position"] for t in supply["transfer_switches"]] == ["grid-b"]
        assert (transfer["switch"], transfer["kind"]) == (switch.id, "transfer")
        assert (transfer["from_source"], transfer["to_source"]) == ("grid-a", "grid-b")
        # The simulated ATyS waits transfer_delay_s (3 s) with its source lost, then passes position 0
        # for half a second; the service sees both ends through polls (switch 0.5 s, meters 1 s), so
        # it measures 3 to 3.5 s (3.0 in runs here). The bounds only rule out a glitch and a breach.
        assert switch.transfer_delay_s / 2 <= transfer["interruption_s"] <= allowed_s, transfer
        assert transfer["within_allowed"] is True and transfer["allowed_interruption_s"] == allowed_s
        assert transfer["lost_at"] < transfer["at"]

        live_view = (await c.get("/api/compliance")).json()["live"]
        assert same_transfer(live_view["last_transfer"], transfer)
        assert [t["switch"] for t in live_view["last_transfers"]] == [switch.id]
        assert same_transfer(live_view["last_transfers"][0], transfer)

        en = (await c.get("/ui/supply", params={"lang": "en"})).text
        assert f'data-transfer="{switch.id}"' in en and "grid-a → grid-b" in en
        assert "Last transfer" in en and "within the allowed interruption" in en
        zh = (await c.get("/ui/supply", params={"lang": "zh"})).text
        assert "最近一次切换" in zh and "未超过允许中断时间" in zh
