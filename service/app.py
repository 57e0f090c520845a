"""The FastAPI application, assembled in one place: the lifespan owns every running part."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from fastapi import FastAPI

from drivers.base import DriverSettings
from drivers.hub import DriverHub
from service.alarms.engine import AlarmTypeConfig
from service.alarms.hazards import HazardWatch
from service.api import install
from service.api.server import run
from service.auth.keys import import_env_keys
from service.auth.principal import KeyCache
from service.auth.sessions import sessions_for
from service.bus.runtime import EXIT_LEASE_LOST, TIMERS_STATE, BusCore
from service.clock import Clock, SystemClock
from service.config.settings import Settings
from service.config.site import Site
from service.control.path import ControlPath, Sweeper
from service.control.scheduler import Scheduler
from service.core import Core
from service.live.events import EventBus
from service.live.rooms_answer import RoomsAnswer
from service.live.state import LiveState
from service.metrics import Metrics
from service.notify.mqttpub import MqttPublisher
from service.notify.notifier import Notifier
from service.onboard.unassigned import broker_watch
from service.services import Services
from service.store.db import Store
from service.telemetry.sink import TelemetrySink

log = logging.getLogger(__name__)

OUTBOX_MAX_LINES = 2_000_000


def build_services(
    site: Site,
    settings: Settings,
    *,
    clock: Clock | None = None,
    drivers: bool = True,
    site_path: Path | None = None,
    alarm_config: Mapping[str, AlarmTypeConfig] | None = None,
    live_state: LiveState | None = None,
) -> Services:
    """Create (not start) the parts of a service for a site, each from the parts it needs (`live_state`:
    one with other staleness limits, e.g. for a simulation run faster than real time)."""
    clock = clock or SystemClock()
    mqtt_url = settings.mqtt_url or site.mqtt.url
    store = Store(settings.database_url)
    events = EventBus()
    metrics = Metrics()
    publisher = _publisher(site, settings, mqtt_url)
    notifier = Notifier(
        site.notifications,
        site_id=site.site.id,
        site_name=site.site.name,
        clock=clock,
        mqtt=publisher,
        timezone=site.site.tz,
        outbox=store,
    )
    # The sink reports its drops to the core and the core reads the hub's counters, while the core
    # is built after the sink and before the hub (which needs core.emit): these closures look the
    # core and the hub up when called, once everything is built.
    core: Core
    hub: DriverHub | None = None

    def telemetry_dropped(lines: int) -> None:
        core.on_telemetry_dropped(lines)

    def rejects() -> dict[str, int]:
        return {d: h.rejects + h.rejected_deltas for d, h in hub.health().items()} if hub is not None else {}

    def driver_totals() -> tuple[int, int]:
        return (hub.modbus_requests, hub.mqtt_loop_errors) if hub is not None else (0, 0)

    sink = _sink(settings, telemetry_dropped)
    runs_drivers = drivers and not settings.bus_url  # with a bus the drivers run in the site's collector
    core = Core(
        site,
        store=store,
        clock=clock,
        events=events,
        metrics=metrics,
        sink=sink,
        notifier=notifier,
        alarm_config=alarm_config,
        rejects_source=rejects if runs_drivers else None,
        driver_totals_source=driver_totals if runs_drivers else None,
        # a core of the bus keeps its alarm delays now counting beside its position, for a core that takes over
        timers_state=TIMERS_STATE if settings.bus_url else None,
        state=live_state,
    )
    if runs_drivers:
        hub = DriverHub(
            site.devices,
            mqtt_url=mqtt_url,
            emit=core.emit,
            client_id=f"wattkeeper-{site.site.id}",
            clock=clock.now,  # readings are stamped by the service's clock, as everything else is
            # Tasmota stamps its messages with local time without an offset: the site's.
            settings=DriverSettings(device_timezone=site.site.timezone),
        )
    bus = BusCore(site, settings, core=core, store=store, clock=clock) if settings.bus_url else None
    control = ControlPath(
        site,
        hub=bus.commands if bus is not None else hub,
        core=core,
        store=store,
        clock=clock,
        metrics=metrics,
        events=events,
    )
    sweeper = Sweeper(site, control)
    scheduler = Scheduler(
        site,
        control=control,
        sweeper=sweeper,
        database_url=settings.database_url,
    )
    return Services(
        site=site,
        settings=settings,
        clock=clock,
        store=store,
        events=events,
        metrics=metrics,
        core=core,
        control=control,
        sweeper=sweeper,
        scheduler=scheduler,
        hazards=HazardWatch(store, core),
        sessions=sessions_for(settings, store),
        key_cache=KeyCache(),
        rooms_answer=RoomsAnswer(),
        mqtt_url=mqtt_url,
        site_path=site_path,
        hub=hub,
        sink=sink,
        notifier=notifier,
        publisher=publisher,
        broker_watch=broker_watch(site, settings, mqtt_url=mqtt_url, drivers=hub is not None),
        bus=bus,
    )


def _publisher(site: Site, settings: Settings, mqtt_url: str) -> MqttPublisher | None:
    """The MQTT client of alarm notifications, when the site names a topic for them."""
    if not site.notifications.mqtt_topic:
        return None
    client_id = f"wattkeeper-{site.site.id}-notify"
    if settings.bus_url:  # several cores of one site: one MQTT session each, or they take turns
        client_id += f"-{os.getpid()}-{os.urandom(3).hex()}"
    return MqttPublisher(mqtt_url, client_id=client_id)


def _sink(settings: Settings, on_drop: Callable[[int], None]) -> TelemetrySink | None:
    """The InfluxDB writer with its outbox, when InfluxDB is configured."""
    if not settings.influx_url:
        return None
    return TelemetrySink(
        settings.influx_url,
        settings.influx_token,
        settings.influx_org,
        settings.influx_bucket,
        settings.data_dir / "outbox",
        max_outbox_lines=OUTBOX_MAX_LINES,
        on_drop=on_drop,
    )


async def start_services(svc: Services) -> None:
    """Open the store, start sinks, notifiers, then the site's parts (`_start_site`).

    A core of the bus starts its site's parts only once it owns the site: until then it serves the
    API from the store the owner writes to.
    """
    await svc.store.open()
    await import_env_keys(svc.store, svc.settings.api_keys, at=svc.clock.now())
    await svc.sessions.start(svc.clock.now())
    if svc.sink is not None:
        await svc.sink.start()
    if svc.publisher is not None:
        await svc.publisher.start()
    if svc.notifier is not None:
        await svc.notifier.start()
    if svc.bus is not None:
        await svc.bus.start(lambda: _start_site(svc))
        return
    await _start_site(svc)


async def _start_site(svc: Services) -> None:
    """What a killed process (or the core before this one) had queued to notify, the core, the drivers
    feeding it, then what acts on the site: scheduler, broker watch, hazard watch."""
    if svc.notifier is not None:
        await svc.notifier.resume_pending()  # before anything new is queued
    await svc.core.start()
    if svc.hub is not None:
        await svc.hub.start()
    await svc.scheduler.start()
    if svc.broker_watch is not None:
        svc.broker_watch.start()
    await svc.hazards.start()


async def stop_services(svc: Services) -> None:
    """Stop everything in reverse order; each step runs even if an earlier one fails."""
    bus = svc.bus
    owning = bus is None or bus.owner
    if bus is not None:
        with contextlib.suppress(Exception):
            await bus.halt()  # no more batches; the lease is released once the core wrote its last
    if owning:  # what _start_site started, in reverse
        with contextlib.suppress(Exception):
            await svc.hazards.stop()
        if svc.broker_watch is not None:
            with contextlib.suppress(Exception):
                await svc.broker_watch.stop()
        with contextlib.suppress(Exception):
            await svc.scheduler.stop()
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
    run(app, app.state.services.events, host=host or settings.http_host, port=port)
    bus = app.state.services.bus
    if bus is not None and bus.lost:
        raise SystemExit(EXIT_LEASE_LOST)  # this core lost its site's lease; its supervisor restarts it
