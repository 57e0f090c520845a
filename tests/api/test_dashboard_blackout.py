"""The dashboard through a blackout (Debian's Chromium, Playwright): grid-a lost, redundancy_lost
acknowledged, grid-b lost -> a new critical grid_lost on the page without a reload, the acknowledged
redundancy_lost left acknowledged; then a feeder back with its meter offline is drawn unknown.
Screenshots go to test-output/dashboard/ (git-ignored)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.api.conftest import Live
from tests.api.test_dashboard_browser import ALARM_S, DESKTOP, STEP_MS, browser, log_in, shots, tab

pytestmark = pytest.mark.browser

__all__ = ["browser", "shots"]  # fixtures shared with test_dashboard_browser


async def test_blackout_shows_a_new_critical_alarm_and_an_unknown_source(
    live: Live, browser: Browser, shots: Path
) -> None:
    context = await browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await log_in(page, live.url, live.svc.keys["operator"])

    live.sim.fault("source_loss", "grid-a")
    await expect(page.locator("#badge .sev-chip.sev-high")).to_be_visible(timeout=ALARM_S)
    await tab(page, "alarms")
    redundancy = page.locator('li.alarm[data-type="redundancy_lost"]')
    await expect(redundancy).to_have_attribute("data-state", "active_unacked")
    await redundancy.locator("button.ack").click()
    await expect(redundancy).to_have_attribute("data-state", "active_acked", timeout=STEP_MS)

    # The second feeder goes: a new critical alarm, pushed over SSE; redundancy_lost stays acknowledged.
    live.sim.fault("source_loss", "grid-b")
    grid_lost = page.locator('li.alarm[data-type="grid_lost"]')
    await expect(grid_lost).to_have_attribute("data-state", "active_unacked", timeout=STEP_MS)
    await expect(grid_lost).to_have_class(re.compile(r"\bsev-critical\b"), timeout=STEP_MS)
    await expect(page.locator("#badge .sev-chip.sev-critical")).to_be_visible(timeout=STEP_MS)
    await expect(redundancy).to_have_attribute("data-state", "active_acked")
    await expect(redundancy).to_contain_text("仅 0 路", timeout=STEP_MS)  # its message followed the condition
    await page.screenshot(path=shots / "blackout-1-grid-lost.png")

    # grid-a comes back while its meter is offline: the switch says available, the meter nothing: unknown.
    live.sim.fault("device_offline", "meter-grid-a")
    live.sim.fault("source_restore", "grid-a")
    await tab(page, "supply")
    await expect(page.locator('.sld [data-node="grid-a"]')).to_have_class("node h-unknown", timeout=ALARM_S)
    await expect(page.locator('.tile[data-source="grid-a"]')).to_have_attribute("data-available", "unknown")
    await expect(page.locator('.sld [data-node="grid-b"]')).to_have_class("node h-bad")
    await page.screenshot(path=shots / "blackout-2-unknown-source.png")
    assert not errors, errors
    await context.close()
