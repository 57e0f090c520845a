"""Where a reading becomes a row in InfluxDB: a driver's reading -> a tagged line of line protocol -> the sink.

The core hands every batch here right after the live state took it (`Core._apply`). `Telemetry.readings`
renders each good reading of a device of this site as one line (service/telemetry/lineproto.py, with the
device's site, room, department and source tags) and puts the batch's lines in the sink's outbox
(service/telemetry/sink.py), which writes them to InfluxDB. Alarm transitions, energy intervals and the
service's own figures take the same way out, through `put`/`put_many`. Without InfluxDB (no sink) the
lines are still rendered: the ones that render are the readings the rollups take.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from drivers.types import DeviceStatus, Reading
from service.config.site import Site
from service.metrics import Metrics
from service.telemetry.lineproto import TelemetryLines, service_line, site_lines
from service.telemetry.sink import TelemetrySink

SERVICE_LINE_S = 10.0


def device_tags(site: Site, device_id: str) -> dict[str, str]:
    """A device's tags on its lines: the site, and its room, department and source where it has them."""
    tags = {"site": site.site.id}
    room = site.room_of(device_id)
    if room is not None:
        tags["room"] = room.id
        tags["department"] = room.department
    for s in site.sources:
        if s.meter == device_id:
            tags["source"] = s.id
    for g in site.generators:
        if device_id in (g.meter, g.device):
            tags["source"] = g.id
    for d in site.departments:
        if d.meter == device_id:
            tags["department"] = d.id
    return tags


class Telemetry:
    """The core's way out to InfluxDB: readings, and whatever else the core writes, as lines into the sink."""

    def __init__(self, site: Site, metrics: Metrics, sink: TelemetrySink | None = None) -> None:
        self.site = site
        self.sink = sink
        self.tags: Mapping[str, Mapping[str, str]] = {d.id: device_tags(site, d.id) for d in site.devices}
        self._lines = TelemetryLines(self.tags)
        self._metrics = metrics
        self._service_line_at: datetime | None = None

    def readings(self, batch: Iterable[Reading | DeviceStatus]) -> list[Reading]:
        """Write the batch's readings; returns those written: the good values of this site's devices."""
        written: list[Reading] = []
        lines: list[str] = []
        line_of = self._lines.line
        for item in batch:
            if isinstance(item, Reading):
                line = line_of(item)
                if line is not None:
                    lines.append(line)
                    written.append(item)
        if lines and self.sink is not None:
            self.sink.put_many(lines)
        return written

    def put(self, line: str) -> None:
        """One line out (nothing without InfluxDB)."""
        if self.sink is not None:
            self.sink.put(line)

    def put_many(self, lines: list[str]) -> None:
        """Lines out (nothing without InfluxDB)."""
        if self.sink is not None and lines:
            self.sink.put_many(lines)

    def service_figures(self, now: datetime, *, devices_offline: int, rejects: int, readings: int) -> None:
        """The outbox's gauges on /metrics and, every SERVICE_LINE_S, the service's own line.

        The site's supply figures and static compliance ride along with the service line, so a board
        drawn over any time range finds them (the 120 % line, the compliance table).
        """
        sink = self.sink
        if sink is None:
            return
        self._metrics.outbox_depth.set(sink.outbox_depth)
        self._metrics.dropped.set(sink.dropped)
        self._metrics.written.set(sink.written)
        if self._service_line_at is not None and (now - self._service_line_at).total_seconds() < SERVICE_LINE_S:
            return
        self._service_line_at = now
        sink.put(
            service_line(
                site=self.site.site.id,
                at=now,
                devices_offline=devices_offline,
                rejects=rejects,
                outbox_depth=sink.outbox_depth,
                dropped=sink.dropped,
                readings=readings,
            )
        )
        sink.put_many(site_lines(self.site, now))
