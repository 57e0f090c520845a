"""The office rules as configured for each room: effective thresholds, central heating, approved plugs.

Pure: read from the site file only. `wattkeeper check`, GET /api/rooms and the dashboard's room
cards show the same facts from here; `reasons` words an active office alarm for a room card.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable, Mapping
from typing import Final

from service.config.site import Room, Site, Thresholds

THRESHOLD_KEYS: Final = tuple(Thresholds.model_fields)


def room_rules(site: Site, room: Room) -> dict[str, object]:
    """A room's office-rule settings: effective thresholds, the keys the room sets itself, heating, approvals."""
    return {
        "thresholds": site.thresholds_of(room).model_dump(),
        "own_thresholds": sorted(room.thresholds.model_dump(exclude_none=True)),
        "central_heating": site.central_heating(room),
        "approved_w": approvals(site, room),
    }


def approvals(site: Site, room: Room) -> dict[str, float]:
    """The room's plugs with an approved appliance: device id -> approved_w."""
    out = {}
    for dev_id in room.devices:
        approved = site.device(dev_id).approved_w
        if approved is not None:
            out[dev_id] = approved
    return out


def office_summary(site: Site) -> dict[str, object]:
    """What `wattkeeper check --json` adds under `office`."""
    season = site.site.heating_season
    return {
        "thresholds": site.site.thresholds.model_dump(),
        "central_heating": site.site.central_heating,
        "heating_season": list(season) if season else None,
        "rooms": [{"id": r.id, **room_rules(site, r)} for r in site.rooms],
    }


def _num(x: float) -> str:
    return f"{x:g}"


def render_office(site: Site, width: int | None = None) -> str:
    """The office thresholds of the site and what each room sets itself, wrapped to the terminal.

    A room shows only the values it sets itself (marked '*'); every other value is the site's, so the
    effective thresholds of any room are the site line with the room's line over it."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    site_cells = [f"{k}={_num(getattr(site.site.thresholds, k))}" for k in THRESHOLD_KEYS]
    site_cells.append(f"central_heating={_yes(site.site.central_heating)}")
    lines = ["", "office rules: the site's thresholds (a room's own values below win, marked *)"]
    lines += textwrap.wrap(" · ".join(site_cells), width=width, initial_indent="  ", subsequent_indent="  ")
    season = site.site.heating_season
    lines += textwrap.wrap(
        "heating season: "
        + (f"{season[0]} to {season[1]}" if season else "all year")
        + " (ac_heating_too_warm only in rooms with central heating)",
        width=width,
    )
    lines.append("rooms:")
    for room in site.rooms:
        effective = site.thresholds_of(room)
        own = room.thresholds.model_dump(exclude_none=True)
        cells = [f"{k}={_num(getattr(effective, k))}*" for k in THRESHOLD_KEYS if k in own]
        if room.central_heating is not None:
            cells.append(f"central_heating={_yes(site.central_heating(room))}*")
        text = " · ".join(cells) if cells else "the site's"
        lines += textwrap.wrap(f"{room.id}  {text}", width=width, initial_indent="  ", subsequent_indent="    ")
    approved = [
        f"  {dev} in {room.id}: {_num(w)} W (the room's plug_max_w is {_num(site.thresholds_of(room).plug_max_w)} W)"
        for room in site.rooms
        for dev, w in approvals(site, room).items()
    ]
    lines.append("approved appliances:" + ("" if approved else " none"))
    lines += approved
    lines.append("")
    return "\n".join(lines)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


Translate = Callable[..., str]


def reason(kind: str, value: object, thresholds: Thresholds, t: Translate, plug_limit_w: float = 0.0) -> str | None:
    """Why a room breaks an office rule, for its card: e.g. '制冷 22 °C ≤ 26 °C', 'lights on at 1,200 lx'.

    `plug_limit_w` is the limit of the plug a high_power_appliance alarm is about."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    words: Mapping[str, Callable[[float], str]] = {
        "ac_too_cold": lambda v: t("why.ac_too_cold", value=_num(v), limit=_num(thresholds.cooling_min_c)),
        "ac_heating_too_warm": lambda v: t(
            "why.ac_heating_too_warm", value=_num(v), limit=_num(thresholds.heating_max_c)
        ),
        "ac_left_on": lambda v: t("why.ac_left_on", minutes=f"{v / 60:.0f}"),
        "lit_empty_room": lambda v: t("why.lit_empty_room", minutes=f"{v / 60:.0f}"),
        "ac_door_open": lambda v: t("why.ac_door_open", minutes=f"{v / 60:.0f}"),
        "lit_in_daylight": lambda v: t("why.lit_in_daylight", lux=f"{v:,.0f}"),
        "high_power_appliance": lambda v: t(
            "why.high_power_appliance", watts=f"{v:,.0f}", limit=f"{plug_limit_w:,.0f}"
        ),
    }
    word = words.get(kind)
    return None if word is None else word(float(value))
