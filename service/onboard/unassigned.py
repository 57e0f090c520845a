"""Devices left to place: seen on the broker or listed in the site file, held by no room (or supply role).

`GET /api/devices?assigned=false` and the dashboard's "unassigned devices" panel read `unassigned()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from drivers.probe import BrokerWatch, Found
from service.config.settings import Settings
from service.config.site import Site
from service.live.state import LiveState
from service.onboard.discover import builtin_profiles


def placed_ids(site: Site) -> set[str]:
    """Devices with a place: held by a room, or the meter or controller of a source, generator,
    transfer switch or department."""
    ids = {d for room in site.rooms for d in room.devices}
    for item in (*site.sources, *site.generators, *site.transfer_switches, *site.departments):
        for key in ("meter", "device"):
            value = getattr(item, key, None)
            if isinstance(value, str):
                ids.add(value)
    return ids


def unassigned(site: Site, heard: Iterable[Found], views: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Site devices without a place, then broker devices the site file does not list (pure).

    `views` are the /api/devices entries of the site's devices by id (online, last_seen).
    """
    placed = placed_ids(site)
    by_topic = {d.topic: d for d in site.devices if d.driver == "mqtt" and d.topic}
    out: list[dict[str, Any]] = []
    for dev in site.devices:
        if dev.id in placed:
            continue
        view = views.get(dev.id, {})
        out.append(
            {
                "id": dev.id,
                "profile": dev.profile,
                "driver": dev.driver,
                "online": bool(view.get("online", False)),
                "last_seen": view.get("last_seen"),
                "topic": dev.topic,
                "assigned": False,
                "in_site_file": True,
                "confidence": None,
                "said": None,
            }
        )
    for f in heard:
        if f.driver != "mqtt" or f.topic in by_topic:
            continue
        out.append(
            {
                "id": f.id,
                "profile": f.match.profile if f.match else None,
                "driver": "mqtt",
                "online": None,
                "last_seen": None,
                "topic": f.topic,
                "assigned": False,
                "in_site_file": False,
                "confidence": f.match.confidence if f.match else None,
                "said": f.said,
            }
        )
    return out


def broker_watch(site: Site, settings: Settings, *, mqtt_url: str, drivers: bool) -> BrokerWatch | None:
    """A watch of the broker's announcements while the service runs drivers and a broker is in the
    picture: the site has MQTT devices, or names a broker (site file `mqtt:` or WATTKEEPER_MQTT_URL)."""
    has_broker = any(d.driver == "mqtt" for d in site.devices) or "mqtt" in site.model_fields_set
    if not drivers or not (has_broker or settings.mqtt_url):
        return None
    return BrokerWatch(mqtt_url, client_id=f"wattkeeper-{site.site.id}-discover")


def unassigned_of(site: Site, watch: BrokerWatch | None, state: LiveState) -> list[dict[str, Any]]:
    """The unassigned devices of a running service: what its watch heard, what its live state knows."""
    heard = watch.found(builtin_profiles()) if watch is not None else []
    views = {d.id: d.to_dict() for d in state.devices()}
    return unassigned(site, heard, views)
