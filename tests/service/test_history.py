"""Telemetry history from InfluxDB (service.telemetry.history): the InfluxQL it sends, how it reads the
answer, and the real servers: InfluxDB 1.x answers with bucket means, VictoriaMetrics refuses the
query (its /query only lists databases), a closed port is unreachable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service.config.settings import Settings
from service.telemetry.history import HistoryUnavailable, InfluxHistory, literal, means_query, parse_means
from tests import servers

T0 = datetime(2026, 5, 1, 2, 14, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("text", "quoted"),
    [("r2119-ac", "'r2119-ac'"), ("it's", "'it\\'s'"), ("a\\b", "'a\\\\b'"), ("2119 会议室", "'2119 会议室'")],
)
def test_literal(text: str, quoted: str) -> None:
    assert literal(text) == quoted


def test_means_query_aligns_buckets_on_the_start() -> None:
    q = means_query("hq", [("ac", "local_temperature"), ("ac", "cooling_setpoint")], T0, T0 + timedelta(days=2), DAY)
    since = int(T0.timestamp())
    assert q == (
        'SELECT mean("value") FROM "telemetry" WHERE "site" = \'hq\' AND '
        "((\"device\" = 'ac' AND \"point\" = 'local_temperature') OR "
        "(\"device\" = 'ac' AND \"point\" = 'cooling_setpoint')) "
        f"AND time >= {since}s AND time < {since + 2 * 86400}s "
        f'GROUP BY time(86400s, {since % 86400}s), "device", "point" fill(none)'
    )
    assert since % 86400 == 2 * 3600 + 14 * 60


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"results": [{"statement_id": 0, "error": "database not found: x"}]}, "database not found: x"),
        (
            {"results": [{"statement_id": 0, "series": [{"name": "databases", "columns": ["name"], "values": []}]}]},
            "answered 'databases'",
        ),
        ({"error": "unable to parse authentication credentials"}, "not an InfluxQL answer"),
        ([], "not an InfluxQL answer"),
    ],
)
def test_an_error_or_another_answer_is_refused(body: object, problem: str) -> None:
    with pytest.raises(HistoryUnavailable, match=problem) as caught:
        parse_means(body)
    assert caught.value.reason == "refused"


def test_parse_means() -> None:
    body = {
        "results": [
            {
                "statement_id": 0,
                "series": [
                    {
                        "name": "telemetry",
                        "tags": {"device": "ac", "point": "local_temperature"},
                        "columns": ["time", "mean"],
                        "values": [[100, 24.5], [200, None], [300, 25]],
                    }
                ],
            }
        ]
    }
    assert parse_means(body) == {("ac", "local_temperature"): {100: 24.5, 300: 25.0}}
    assert parse_means({"results": [{"statement_id": 0}]}) == {}


@pytest.mark.parametrize(
    ("bucket", "token", "database", "rp"),
    [("wattkeeper", "", "wattkeeper", ""), ("telemetry/autogen", "user:pw", "telemetry", "autogen")],
)
def test_from_settings_reads_the_sinks_settings(bucket: str, token: str, database: str, rp: str) -> None:
    settings = Settings(_env_file=None, influx_url="http://influx:8086/", influx_bucket=bucket, influx_token=token)
    assert InfluxHistory.from_settings(settings) == InfluxHistory("http://influx:8086", database, rp, token)
    assert InfluxHistory.from_settings(Settings(_env_file=None)) is None


async def test_means_from_influxdb1(influxdb1: servers.Server) -> None:
    db = f"history_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(days=200)
    points = [
        # Two readings in the first day's bucket, one in the third; another site's and another point's too.
        (start + timedelta(hours=1), "hq", "ac", "local_temperature", 20.0),
        (start + timedelta(hours=5), "hq", "ac", "local_temperature", 23.0),
        (start + timedelta(days=2, hours=23), "hq", "ac", "local_temperature", 30.0),
        (start + timedelta(hours=1), "hq", "ac", "cooling_setpoint", 26.0),
        (start + timedelta(hours=1), "other", "ac", "local_temperature", 99.0),
        (start - timedelta(minutes=1), "hq", "ac", "local_temperature", 99.0),
    ]
    lines = "\n".join(
        f"telemetry,site={site},device={dev},point={pt},unit=°C value={v} {int(at.timestamp())}"
        for at, site, dev, pt, v in points
    )
    async with httpx.AsyncClient(base_url=influxdb1.url, timeout=30) as c:
        (await c.post("/query", data={"q": f"CREATE DATABASE {db}"})).raise_for_status()
        r = await c.post("/write", params={"db": db, "precision": "s"}, content=lines)
        assert r.status_code == 204, r.text
        try:
            history = InfluxHistory(influxdb1.url, db)
            wanted = [("ac", "local_temperature"), ("ac", "cooling_setpoint"), ("ac", "power")]
            got = await history.means("hq", wanted, start, start + timedelta(days=10), DAY)
            with pytest.raises(HistoryUnavailable, match="database not found") as caught:
                await InfluxHistory(influxdb1.url, db + "_none").means("hq", wanted, start, now, DAY)
        finally:
            await c.post("/query", data={"q": f"DROP DATABASE {db}"})
    s = int(start.timestamp())
    assert got == {
        ("ac", "local_temperature"): {s: 21.5, s + 2 * 86400: 30.0},
        ("ac", "cooling_setpoint"): {s: 26.0},
    }
    assert caught.value.reason == "refused"


async def test_victoriametrics_refuses_and_a_closed_port_is_unreachable(victoria: servers.Server) -> None:
    now = datetime.now(UTC)
    with pytest.raises(HistoryUnavailable, match="'databases'") as refused:
        await InfluxHistory(victoria.url, "wattkeeper").means("hq", [("ac", "t")], now - DAY, now, DAY)
    assert refused.value.reason == "refused"
    closed = f"http://127.0.0.1:{servers.free_port()}"
    with pytest.raises(HistoryUnavailable) as down:
        await InfluxHistory(closed, "wattkeeper", timeout_s=2).means("hq", [("ac", "t")], now - DAY, now, DAY)
    assert down.value.reason == "unreachable" and "ConnectError" in down.value.detail
