"""The service SIGKILLed while a notification waits for a webhook that is down: restarted, it sends it.

The demo site's grid-b is lost from the start, so `redundancy_lost` is raised once its on-delay has
run; the site's one webhook answers 503 (the service keeps retrying with backoff). The service is
killed after the first failed attempt, the webhook comes back, and the service is started again:
the alarm is restored from the state store (not raised again), so the message can only come from
the notification outbox. It must arrive once, and the outbox must be empty afterwards.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from service.config.site import Notifications, Webhook
from service.store.db import Store
from simulators.runner import Simulation
from tests import servers
from tests.conftest import site_for_test, write_site
from tests.faults.helpers import ServiceProcess, figure
from tests.harness import eventually
from tests.service.conftest import serve_http


class Hook:
    """A webhook that records each POST with the status it answered; `up` decides 204 or 503."""

    def __init__(self) -> None:
        self.up = False
        self.calls: list[tuple[int, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hook.lock:
                    status = 204 if hook.up else 503
                    hook.calls.append((status, body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    async def sent(self, status: int) -> list[dict[str, Any]] | None:
        """`raised(status)`, or None while there is none (for `eventually`)."""
        return self.raised(status) or None

    def raised(self, status: int) -> list[dict[str, Any]]:
        """Bodies of `redundancy_lost` raise messages answered with `status`."""
        with self.lock:
            return [
                b
                for s, b in self.calls
                if s == status and b.get("type") == "redundancy_lost" and b.get("state") == "active_unacked"
            ]


async def _pending(db: Path) -> int:
    store = Store(f"sqlite:///{db}")
    await store.open()
    try:
        return len(await store.pending_notices())
    finally:
        await store.close()


@pytest.mark.slow
async def test_notification_queued_at_sigkill_is_sent_after_restart(
    fresh_mosquitto: servers.Mosquitto, tmp_path: Path
) -> None:
    hook = Hook()
    with serve_http(hook.handler()) as url:
        site = site_for_test(fresh_mosquitto.url)
        site = site.model_copy(update={"notifications": Notifications(webhooks=[Webhook(url=f"{url}/alarms")])})
        workdir = tmp_path / "service"
        db = workdir / "wattkeeper.db"
        svc = ServiceProcess(
            write_site(site, tmp_path / "site.yaml"), workdir, {"WATTKEEPER_MQTT_URL": fresh_mosquitto.url}
        )
        try:
            async with Simulation(site, control_port=None, seed=11) as sim:
                sim.fault("source_loss", "grid-b")
                await asyncio.to_thread(svc.start)
                await eventually(lambda: hook.sent(503), 60, 0.2)
                svc.sigkill()
                kept = await _pending(db)
                hook.up = True
                await asyncio.to_thread(svc.start)
                await eventually(lambda: hook.sent(204), 30, 0.2)
                await asyncio.sleep(3)  # room for a wrong second send
                delivered = hook.raised(204)
                await asyncio.to_thread(svc.stop)
                left = await _pending(db)
        finally:
            svc.stop()
    failed = hook.raised(503)
    figure(
        "notify-kill",
        f"a redundancy_lost message refused {len(failed)} time(s) by a down webhook, the service SIGKILLed with "
        f"{kept} message(s) kept: after the restart it arrived {len(delivered)} time(s), {left} left in the outbox",
    )
    assert kept >= 1
    assert len(delivered) == 1 and delivered[0]["id"] == failed[0]["id"]
    assert left == 0
