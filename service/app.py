"""The FastAPI application, assembled in one place: the lifespan owns every running part."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from drivers.base import DriverSettings
from drivers.hub import DriverHub
from service.alarms.engine import AlarmTypeConfig
from service.alarms.hazards import install as install_hazards
from service.auth.keys import import_env_keys
from service.clock import Clock, SystemClock
from service.config.settings import Settings
from service.config.site import Site
from service.control.scheduler import install as install_control
from service.core import Core
from service.live.events import EventBus
from service.metrics import Metrics
from service.notify.mqttpub import MqttPublisher
from service.notify.notifier import Notifier
from service.onboard.unassigned import install_broker_watch
from service.store.db import Store
from service.telemetry.sink import TelemetrySink

log = logging.getLogger(__name__)

OUTBOX_MAX_LINES = 2_000_000


@dataclass
class Services:
    """Every running part of one service instance (held in app.state.services)."""

    site: Site
    settings: Settings
    clock: Clock
    store: Store
    events: EventBus
    metrics: Metrics
    core: Core
    mqtt_url: str
    site_path: Path | None = None
    hub: DriverHub | None = None
    sink: TelemetrySink | None = None
    notifier: Notifier | None = None
    publisher: MqttPublisher | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def build_services(
    site: Site,
    settings: Settings,
    *,
    clock: Clock | None = None,
    drivers: bool = True,
    site_path: Path | None = None,
    alarm_config: Mapping[str, AlarmTypeConfig] | None = None,
) -> Services:
    """Create (not start) the parts of a service for a site."""
    clock = clock or SystemClock()
    mqtt_url = settings.mqtt_url or site.mqtt.url
    store = Store(settings.database_url)
    events = EventBus()
    metrics = Metrics()
    publisher = None
    if site.notifications.mqtt_topic:
        client_id = f"wattkeeper-{site.site.id}-notify"
        if settings.bus_url:  # several cores of one site: one MQTT session each, or they take turns
            client_id += f"-{os.getpid()}-{os.urandom(3).hex()}"
        publisher = MqttPublisher(mqtt_url, client_id=client_id)
    notifier = Notifier(
        site.notifications,
        site_id=site.site.id,
        site_name=site.site.name,
        clock=clock,
        mqtt=publisher,
        timezone=site.site.tz,
        outbox=store,
    )
    core = Core(
        site, store=store, clock=clock, events=events, metrics=metrics, notifier=notifier, alarm_config=alarm_config
    )
    sink = None
    if settings.influx_url:
        sink = TelemetrySink(
            settings.influx_url,
            settings.influx_token,
            settings.influx_org,
            settings.influx_bucket,
            settings.data_dir / "outbox",
            max_outbox_lines=OUTBOX_MAX_LINES,
            on_drop=core.on_telemetry_dropped,
        )
        core.sink = sink
    hub = None
    if drivers and not settings.bus_url:  # with a bus the drivers run in the site's collector
        hub = DriverHub(
            site.devices,
            mqtt_url=mqtt_url,
            emit=core.emit,
            client_id=f"wattkeeper-{site.site.id}",
            clock=clock.now,  # readings are stamped by the service's clock, as everything else is
            # Tasmota stamps its messages with local time without an offset: the site's.
            settings=DriverSettings(device_timezone=site.site.timezone),
        )
    if hub is not None:
        drivers_hub = hub
        core.rejects_source = lambda: {d: h.rejects + h.rejected_deltas for d, h in drivers_hub.health().items()}
        core.driver_totals_source = lambda: (drivers_hub.modbus_requests, drivers_hub.mqtt_loop_errors)
    svc = Services(
        site=site,
        settings=settings,
        clock=clock,
        store=store,
        events=events,
        metrics=metrics,
        core=core,
        mqtt_url=mqtt_url,
        site_path=site_path,
        hub=hub,
        sink=sink,
        notifier=notifier,
        publisher=publisher,
    )
    install_control(svc)
    install_broker_watch(svc)
    install_hazards(svc)
    if settings.bus_url:
        from service.bus.runtime import install_bus

        install_bus(svc)
    return svc


async def start_services(svc: Services) -> None:
    """Open the store, start sinks, notifiers, core, drivers and the scheduler, in that order."""
    await svc.store.open()
    await import_env_keys(svc.store, svc.settings.api_keys, at=svc.clock.now())
    if svc.sink is not None:
        await svc.sink.start()
    if svc.publisher is not None:
        await svc.publisher.start()
    if svc.notifier is not None:
        await svc.notifier.start()
    bus = svc.extras.get("bus")
    if bus is not None:
        await bus.start()  # the core and the start hooks start once this core owns the site
        return
    if svc.notifier is not None:
        await svc.notifier.resume_pending()  # what a killed process had queued, before anything new
    await svc.core.start()
    if svc.hub is not None:
        await svc.hub.start()
    for hook in svc.extras.get("start", []):
        await hook(svc)


async def stop_services(svc: Services) -> None:
    """Stop everything in reverse order; each step runs even if an earlier one fails."""
    bus = svc.extras.get("bus")
    owning = bus is None or bus.owner
    if bus is not None:
        with contextlib.suppress(Exception):
            await bus.halt()  # no more batches; the lease is released once the core wrote its last
    for hook in reversed(svc.extras.get("stop", []) if owning else []):
        with contextlib.suppress(Exception):
            await hook(svc)
    if svc.hub is not None:
        with contextlib.suppress(Exception):
            await svc.hub.stop()
    if owning:  # a core that does not own the site (any more) writes nothing of it
        with contextlib.suppress(Exception):
            await svc.core.stop()
    if svc.notifier is not None:
        with contextlib.suppress(Exception):
            await svc.notifier.stop()
    if svc.publisher is not None:
        with contextlib.suppress(Exception):
            await svc.publisher.stop()
    if svc.sink is not None:
        with contextlib.suppress(Exception):
            await svc.sink.stop()
    if bus is not None:
        with contextlib.suppress(Exception):
            await bus.stop()
    with contextlib.suppress(Exception):
        await svc.store.close()


def create_app(
    site: Site,
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    drivers: bool = True,
    site_path: Path | None = None,
    alarm_config: Mapping[str, AlarmTypeConfig] | None = None,
) -> FastAPI:
    """The wattkeeper ASGI application for a site."""
    from service.api import install

    settings = settings or Settings()
    svc = build_services(site, settings, clock=clock, drivers=drivers, site_path=site_path, alarm_config=alarm_config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await start_services(svc)
        try:
            yield
        finally:
            await stop_services(svc)

    app = FastAPI(
        title="wattkeeper",
        version="0.1.0",
        summary="Power monitoring and control for an important power customer's office site",
        lifespan=lifespan,
        # The API description needs a key like the rest: service.api.routes.docs serves it.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # FastAPI's native OpenTelemetry asks the global providers on every request; wattkeeper
        # exports its own Prometheus metrics (/metrics), so it is on only when asked for.
        telemetry=None if settings.otel else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = svc
    install(app, max_body=settings.max_body_bytes, sites=[site.site.id])
    return app


def serve(site: Site, *, site_path: Path | None, port: int, host: str | None = None) -> None:
    """Run the service until interrupted."""
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(site, settings, site_path=site_path)
    from service.api.server import run

    run(app, app.state.services.events, host=host or settings.http_host, port=port)
    if app.state.services.extras.get("bus_lost"):
        raise SystemExit(4)  # this core lost its site's lease (service.bus.runtime); its supervisor restarts it
