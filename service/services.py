"""Every running part of one service instance, typed: what service.app builds and the API reads.

Only the record lives here, no logic: `service.app.build_services` makes it and the routes read it
through `service.api.deps`, so neither the API nor the parts it reaches import the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drivers.hub import DriverHub
from drivers.probe import BrokerWatch
from service.alarms.hazards import HazardWatch
from service.auth.principal import KeyCache
from service.auth.sessions import Sessions
from service.bus.runtime import BusCore
from service.clock import Clock
from service.config.settings import Settings
from service.config.site import Site
from service.control.path import ControlPath, Sweeper
from service.control.scheduler import Scheduler
from service.core import Core
from service.live.events import EventBus
from service.live.rooms_answer import RoomsAnswer
from service.metrics import Metrics
from service.notify.mqttpub import MqttPublisher
from service.notify.notifier import Notifier
from service.store.db import Store
from service.telemetry.sink import TelemetrySink


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
    control: ControlPath
    sweeper: Sweeper
    scheduler: Scheduler
    hazards: HazardWatch
    sessions: Sessions
    key_cache: KeyCache
    rooms_answer: RoomsAnswer
    mqtt_url: str
    site_path: Path | None = None
    hub: DriverHub | None = None
    sink: TelemetrySink | None = None
    notifier: Notifier | None = None
    publisher: MqttPublisher | None = None
    broker_watch: BrokerWatch | None = None  # devices announcing themselves on the broker
    bus: BusCore | None = None  # a core of the bus: the site is this core's while it holds the lease
