"""Telemetry history read back from InfluxDB: bucket means of device points, for trends longer than
the store keeps its 1-minute rollups.

The sink writes raw readings (measurement `telemetry`, field `value`); this reads them with InfluxQL
over the 1.x `/query` endpoint, which InfluxDB 1.x, 2.x (through its DBRP mapping of the bucket) and
3.x answer. The settings are the sink's: bucket ``db/rp`` (or ``db``), token ``user:password`` on
1.x or the API token on 2.x and 3.x, sent as ``Authorization: Token``. VictoriaMetrics takes the
sink's writes but answers no InfluxQL SELECT (its `/query` lists databases, whatever is asked):
that shows here as a refused query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import httpx

from service.config.settings import Settings
from service.telemetry.measurements import TELEMETRY

# A trend waits this long at most before it says InfluxDB is unreachable: a year of a meter polled
# every second is some 30 million readings to average, so the query itself may take seconds.
TIMEOUT_S: Final = 10.0
CONNECT_TIMEOUT_S: Final = 2.0

Point = tuple[str, str]  # (device, point)
Failure = Literal["unreachable", "refused"]


class HistoryUnavailable(Exception):
    """InfluxDB did not answer (`unreachable`: connection, timeout, 5xx) or refused the query (`refused`)."""

    def __init__(self, reason: Failure, detail: str) -> None:
        super().__init__(f"InfluxDB {reason}: {detail}")
        self.reason: Failure = reason
        self.detail = detail


def literal(text: str) -> str:
    """An InfluxQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def means_query(site: str, points: Sequence[Point], start: datetime, end: datetime, every: timedelta) -> str:
    """One InfluxQL statement: the mean `value` of each (device, point) of `site` per bucket of `every`
    over [start, end), buckets aligned on `start` (GROUP BY time's offset), empty buckets left out."""
    step = int(every.total_seconds())
    since = int(start.timestamp())
    which = " OR ".join(f'("device" = {literal(d)} AND "point" = {literal(p)})' for d, p in points)
    return (
        f'SELECT mean("value") FROM "{TELEMETRY}" WHERE "site" = {literal(site)} AND ({which}) '
        f"AND time >= {since}s AND time < {int(end.timestamp())}s "
        f'GROUP BY time({step}s, {since % step}s), "device", "point" fill(none)'
    )


def parse_means(body: Any) -> dict[Point, dict[int, float]]:
    """Bucket means per (device, point) keyed by epoch seconds, from a `/query?epoch=s` answer of
    means_query; HistoryUnavailable('refused') for an error or an answer that is not one."""
    try:
        (result,) = body["results"]
    except (KeyError, TypeError, ValueError):
        raise HistoryUnavailable("refused", f"not an InfluxQL answer: {str(body)[:200]}") from None
    if "error" in result:
        raise HistoryUnavailable("refused", str(result["error"]))
    out: dict[Point, dict[int, float]] = {}
    for series in result.get("series", []):
        if series.get("name") != TELEMETRY or series.get("columns") != ["time", "mean"]:
            raise HistoryUnavailable("refused", f"answered {series.get('name')!r}, not the {TELEMETRY} means")
        tags = series.get("tags") or {}
        values = out.setdefault((str(tags.get("device")), str(tags.get("point"))), {})
        for ts, mean in series["values"]:
            if mean is not None:
                values[int(ts)] = float(mean)
    return out


@dataclass(frozen=True, slots=True)
class InfluxHistory:
    """Where the sink's telemetry can be read back: the `/query` endpoint, database and retention policy."""

    url: str
    database: str
    retention_policy: str = ""
    token: str = ""
    timeout_s: float = TIMEOUT_S

    @classmethod
    def from_settings(cls, settings: Settings) -> InfluxHistory | None:
        """The InfluxDB the sink writes to; None when none is configured."""
        if not settings.influx_url:
            return None
        database, _, rp = settings.influx_bucket.partition("/")
        return cls(settings.influx_url.rstrip("/"), database, rp, settings.influx_token)

    def _params(self, query: str) -> dict[str, str]:
        params = {"db": self.database, "q": query, "epoch": "s"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        return params

    async def means(
        self, site: str, points: Sequence[Point], start: datetime, end: datetime, every: timedelta
    ) -> dict[Point, dict[int, float]]:
        """Bucket means of each (device, point) over [start, end) (see means_query), in one request."""
        if not points:
            return {}
        headers: Mapping[str, str] = {"Authorization": f"Token {self.token}"} if self.token else {}
        query = means_query(site, points, start, end, every)
        try:
            timeout = httpx.Timeout(self.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.timeout_s))
            async with httpx.AsyncClient(timeout=timeout, headers=headers) as client:
                r = await client.post(f"{self.url}/query", data=self._params(query))
        except httpx.HTTPError as exc:
            raise HistoryUnavailable("unreachable", f"{type(exc).__name__}: {exc}") from None
        if r.status_code >= 400:
            reason: Failure = "unreachable" if r.status_code >= 500 else "refused"
            raise HistoryUnavailable(reason, f"HTTP {r.status_code}: {r.text[:200]}")
        try:
            body = r.json()
        except ValueError:
            raise HistoryUnavailable("refused", f"not JSON: {r.text[:200]}") from None
        return parse_means(body)
