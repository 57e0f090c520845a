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
"""

from __future__ import annotations

from typing import Final

TELEMETRY: Final = "telemetry"
ALARM: Final = "alarm"
ENERGY: Final = "energy"
SERVICE: Final = "wattkeeper"

TELEMETRY_TAGS: Final = ("site", "device", "point", "room", "department", "source", "unit")
TELEMETRY_FIELDS: Final = ("value", "text")
ALARM_TAGS: Final = ("site", "type", "subject", "severity")
ALARM_FIELDS: Final = ("state", "active")
ENERGY_TAGS: Final = ("site", "meter", "department", "source", "band")
ENERGY_FIELDS: Final = ("kwh", "cost", "after_hours")
SERVICE_TAGS: Final = ("site",)
SERVICE_FIELDS: Final = ("devices_offline", "rejects", "outbox_depth", "dropped", "readings")
