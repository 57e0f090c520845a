"""The site file's `alarms:` block: parsed with key paths and lines, applied over the defaults, shown by `check`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.alarms.engine import DEFAULT_CONFIG, AlarmEngine, AlarmTypeConfig, effective_table, site_config
from service.alarms.record import Severity
from service.alarms.rules import AlarmType, evaluate
from service.clock import ManualClock
from service.config.site import Site, SiteError, parse_site
from service.core import Core
from service.live.events import EventBus
from service.live.state import LiveState
from service.metrics import Metrics
from service.store.db import Store
from tests.conftest import DEMO_SITE
from tests.service.test_state import at, feed, make_site, site_dict

DEMO_TEXT = DEMO_SITE.read_text(encoding="utf-8")


def with_block(block: str) -> str:
    """The demo site file with an `alarms:` block appended."""
    return DEMO_TEXT.rstrip("\n") + "\n\n" + block.strip("\n") + "\n"


def errors(text: str) -> list[str]:
    with pytest.raises(SiteError) as exc:
        parse_site(text, "site.yaml")
    return exc.value.errors


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_a_block_overrides_only_the_keys_it_gives() -> None:
    site = parse_site(
        with_block("""
alarms:
  ac_too_cold: {on_delay_s: 0, severity: warning}
  lit_empty_room: {enabled: false}
  grid_lost: {off_delay_s: 120}
""")
    )
    config = site_config(site)
    assert config["ac_too_cold"] == AlarmTypeConfig(
        on_delay_s=0.0, off_delay_s=60.0, deadband=0.5, severity=Severity.warning, enabled=True
    )
    assert config["lit_empty_room"].enabled is False
    assert config["grid_lost"].off_delay_s == 120.0 and config["grid_lost"].on_delay_s == 0.0
    untouched = {k for k in DEFAULT_CONFIG if k not in ("ac_too_cold", "lit_empty_room", "grid_lost")}
    assert all(config[k] == DEFAULT_CONFIG[k] for k in untouched)


def test_no_block_keeps_todays_defaults() -> None:
    site = parse_site(DEMO_TEXT)
    assert site_config(site) == dict(DEFAULT_CONFIG)
    rows = {r["type"]: r for r in effective_table(site)}
    assert set(rows) == {t.value for t in AlarmType}
    assert rows["redundancy_lost"] == {
        "type": "redundancy_lost",
        "on_delay_s": 10.0,
        "off_delay_s": 60.0,
        "deadband": 0.0,
        "severity": "high",
        "enabled": True,
        "from": "default",
        "note": "",
    }
    assert rows["grid_lost"]["severity"] == "critical" and rows["grid_lost"]["on_delay_s"] == 0.0


@pytest.mark.parametrize(
    ("block", "needle", "message"),
    [
        (
            "alarms:\n  grid_lostt: {on_delay_s: 0}\n",
            "grid_lostt",
            "alarms.grid_lostt: unknown alarm type 'grid_lostt'",
        ),
        ("alarms:\n  ac_too_cold: {on_delay: 0}\n", "on_delay: 0", "alarms.ac_too_cold.on_delay: unknown key"),
        (
            "alarms:\n  ac_too_cold:\n    on_delay_s: -1\n",
            "on_delay_s: -1",
            "alarms.ac_too_cold.on_delay_s: Input should",
        ),
        ("alarms:\n  ac_too_cold:\n    severity: urgent\n", "severity: urgent", "alarms.ac_too_cold.severity: Input"),
        ("alarms:\n  ac_too_cold:\n    enabled: maybe\n", "enabled: maybe", "alarms.ac_too_cold.enabled: Input"),
    ],
)
def test_a_bad_block_is_a_site_file_error_with_key_path_and_line(block: str, needle: str, message: str) -> None:
    text = with_block(block)
    (err,) = errors(text)
    assert err.startswith(message), err
    assert err.endswith(f"(site.yaml:{line_of(text, needle)})"), err


def test_on_delay_zero_fires_ac_too_cold_on_one_reading() -> None:
    data = site_dict()
    data["alarms"] = {"ac_too_cold": {"on_delay_s": 0}}
    tuned = Site.model_validate(data)
    for site, raised in ((tuned, True), (make_site(), False)):
        state = LiveState(site)
        engine = AlarmEngine(site_config(site))
        feed(state, at(0), "r1-ac", system_mode="cool", running_state="cool", local_temperature=24.0)
        engine.update(evaluate(site, state, at(0)), at(0))
        assert any(a.type == "ac_too_cold" for a in engine.active()) is raised


async def test_the_service_applies_the_block(tmp_path: Path) -> None:
    """The core builds its engine from the site's block (over the configuration it is given)."""
    data = site_dict()
    data["alarms"] = {"ac_too_cold": {"on_delay_s": 0, "severity": "high"}, "backfeed": {"enabled": False}}
    site = Site.model_validate(data)
    store = Store(f"sqlite:///{tmp_path}/wk.db")
    await store.open()
    try:
        clock = ManualClock(datetime(2026, 7, 1, 2, 0, tzinfo=UTC))
        core = Core(site, store=store, clock=clock, events=EventBus(), metrics=Metrics())
        assert core.engine.config("ac_too_cold").on_delay_s == 0.0
        assert core.engine.config("ac_too_cold").severity is Severity.high
        assert core.engine.config("backfeed").enabled is False
        assert core.engine.config("redundancy_lost") == DEFAULT_CONFIG["redundancy_lost"]
    finally:
        await store.close()
