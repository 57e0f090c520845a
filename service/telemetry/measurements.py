"""Telemetry names in InfluxDB: one source of truth for the sink and the Grafana boards.

Line protocol written by the sink (all timestamps in nanoseconds, UTC):

- ``telemetry,site=S,device=D,point=P[,room=R][,department=X][,source=Y][,unit=U] value=<float>``
  one line per good numeric or boolean reading (booleans as 0/1); state strings go to the
  field ``text`` instead of ``value``.
- ``alarm,site=S,type=T,subject=X,severity=V state="active_unacked",active=1i``
  one line per alarm transition.
- ``energy,site=S,meter=M[,department=X][,source=Y],band=B kwh=<float>,cost=<float>,after_hours=<0|1>i``
  one line per 15-minute energy interval of a meter.
- ``wattkeeper,site=S devices_offline=<int>i,rejects=<int>i,outbox_depth=<int>i,dropped=<int>i,readings=<int>i``
  the service's own data-quality counters, every 10 s.
- ``site_info,site=S grade="first",security_load_kw=<float>,allowed_interruption_s=<float>`` and
  ``site_info,site=S,generator=G rated_kw=<float>,start_limit_s=<float>``
  the site file's supply figures, with the counters: the boards draw the 120 % line from them.
- ``compliance,site=S,rule=R status="PASS",level=<int>i,title="...",detail="..."``
  the static compliance result of each rule (`wattkeeper check`), with the counters;
  `level` is COMPLIANCE_LEVELS[status], so a board can colour and map it.
"""

from __future__ import annotations

from typing import Final

TELEMETRY: Final = "telemetry"
ALARM: Final = "alarm"
ENERGY: Final = "energy"
SERVICE: Final = "wattkeeper"
SITE_INFO: Final = "site_info"
COMPLIANCE: Final = "compliance"

TELEMETRY_TAGS: Final = ("site", "device", "point", "room", "department", "source", "unit")
TELEMETRY_FIELDS: Final = ("value", "text")
ALARM_TAGS: Final = ("site", "type", "subject", "severity")
ALARM_FIELDS: Final = ("state", "active")
ENERGY_TAGS: Final = ("site", "meter", "department", "source", "band")
ENERGY_FIELDS: Final = ("kwh", "cost", "after_hours")
SERVICE_TAGS: Final = ("site",)
SERVICE_FIELDS: Final = ("devices_offline", "rejects", "outbox_depth", "dropped", "readings")
SITE_INFO_TAGS: Final = ("site", "generator")
SITE_FIELDS: Final = ("grade", "security_load_kw", "allowed_interruption_s")  # the site's series
GENERATOR_FIELDS: Final = ("rated_kw", "start_limit_s")  # a generator's series (tag generator)
SITE_INFO_FIELDS: Final = SITE_FIELDS + GENERATOR_FIELDS
COMPLIANCE_TAGS: Final = ("site", "rule")
COMPLIANCE_FIELDS: Final = ("status", "level", "title", "detail")

# Worse is higher; N/A (the rule does not apply to the site's grade) below PASS.
COMPLIANCE_LEVELS: Final = {"N/A": -1, "PASS": 0, "WARN": 1, "FAIL": 2}

# Every measurement the sink writes: its tag keys and field keys.
SCHEMA: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    TELEMETRY: (TELEMETRY_TAGS, TELEMETRY_FIELDS),
    ALARM: (ALARM_TAGS, ALARM_FIELDS),
    ENERGY: (ENERGY_TAGS, ENERGY_FIELDS),
    SERVICE: (SERVICE_TAGS, SERVICE_FIELDS),
    SITE_INFO: (SITE_INFO_TAGS, SITE_INFO_FIELDS),
    COMPLIANCE: (COMPLIANCE_TAGS, COMPLIANCE_FIELDS),
}
