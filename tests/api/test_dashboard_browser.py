"""The dashboard in Debian's Chromium (Playwright, no browser download) against the simulated site.

One walk through a facility manager's evening: log in; a lost grid source shows up as an alarm
within seconds; acknowledge it; hold a room on with an override; run the after-hours sweep and
watch a lit, empty room go dark (checked against the simulated light itself); then the same site
on a phone, as a viewer (no control buttons), and in English. Screenshots go to
test-output/dashboard/ (git-ignored); the energy panel shows a seeded month of 15-minute intervals,
because a test cannot wait for real ones.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, Dialog, Page, ViewportSize, async_playwright, expect

from service.config.calendar import WorkCalendar
from service.services import Services
from service.store.db import EnergyInterval, Rollup
from tests.api.conftest import Live
from tests.conftest import ROOT

pytestmark = pytest.mark.browser

OUT = ROOT / "test-output" / "dashboard"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP: ViewportSize = {"width": 1366, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
ALARM_S = 30_000  # redundancy_lost waits its 10 s on-delay before it is raised
STEP_MS = 15_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless."""
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    """A clean screenshot directory for this run."""
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    print(f"\ndashboard screenshots: {OUT}")
    return OUT


async def seed_energy(svc: Services) -> None:
    """A month so far of department energy, and today's department load, as the core would store them."""
    site, tariff = svc.site, svc.site.tariff
    assert tariff is not None
    calendar = WorkCalendar(site.calendar, site.site.tz)
    bands = tariff.band_table()
    now = svc.clock.now()
    local = now.astimezone(site.site.tz)
    t = datetime(local.year, local.month, 1, tzinfo=site.site.tz)
    today = datetime.combine(local.date(), time(), tzinfo=site.site.tz)
    intervals, rollups = [], []
    while t < now - timedelta(minutes=15):
        lt = t.astimezone(site.site.tz)
        working = calendar.is_working(t)
        band = bands[lt.hour * 60 + lt.minute]
        for i, dept in enumerate(site.departments):
            assert dept.meter is not None
            kw = dept.base_load_kw + (10 + 8 * i) * (1.0 if working else 0.15) * (0.9 + 0.1 * math.sin(lt.hour))
            kwh = kw / 4
            intervals.append(
                EnergyInterval(
                    meter=dept.meter,
                    start=t,
                    kwh=kwh,
                    band=band,
                    cost=kwh * tariff.price_of(band),
                    after_hours=not working,
                    department=dept.id,
                )
            )
            if t >= today:
                w = kw * 1000
                for m in range(15):
                    minute = t + timedelta(minutes=m)
                    rollups.append(
                        Rollup(device=dept.meter, point="power", minute=minute, min=w, max=w, mean=w, last=w, count=60)
                    )
        t += timedelta(minutes=15)
    await svc.store.upsert_energy(intervals)
    await svc.store.upsert_rollups(rollups)


async def log_in(page: Page, url: str, key: str) -> None:
    """The login page, the key, the dashboard with its event stream open."""
    await page.goto(url + "/")
    await expect(page.locator("#key")).to_be_visible()
    await page.fill("#key", key)
    await page.click("button[type=submit]")
    await expect(page.locator("#panel-supply")).to_be_visible()
    await expect(page.locator("#live")).to_have_class("live on", timeout=STEP_MS)


async def tab(page: Page, view: str) -> None:
    """Open a panel from the tab bar."""
    await page.click(f'.tabs a[data-view="{view}"]')
    await expect(page.locator(f"#panel-{view}")).to_be_visible()


def light_on(live: Live, device: str) -> bool:
    """What the simulated light itself says."""
    on: bool = live.sim.state()["devices"][device]["on"]
    return on


async def test_facility_manager_evening(live: Live, browser: Browser, shots: Path) -> None:
    """Login, fault -> alarm, acknowledge, override, sweep -> lights off, end the override, audit,
    energy, phone, viewer, English."""
    await seed_energy(live.svc.services)
    context = await browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)

    await page.goto(live.url + "/")
    await page.screenshot(path=shots / "01-login.png")
    await log_in(page, live.url, live.svc.keys["operator"])
    await page.screenshot(path=shots / "02-supply.png")

    # A grid source lost: the header and the alarm list show it without a reload.
    live.sim.fault("source_loss", "grid-a")
    await expect(page.locator("#badge .sev-chip.sev-high")).to_be_visible(timeout=ALARM_S)
    await expect(page.locator('.sld [data-node="grid-a"]')).to_have_class("node h-bad", timeout=STEP_MS)
    await page.screenshot(path=shots / "03-supply-grid-a-lost.png")
    await tab(page, "alarms")
    alarm = page.locator('li.alarm[data-type="redundancy_lost"]')
    await expect(alarm).to_have_attribute("data-state", "active_unacked")
    await page.screenshot(path=shots / "04-alarm-raised.png")
    await alarm.locator("button.ack").click()
    await expect(alarm).to_have_attribute("data-state", "active_acked", timeout=STEP_MS)
    await expect(page.locator("#alarm-history td", has_text="电源冗余丧失").first).to_be_visible()
    await page.screenshot(path=shots / "05-alarm-acknowledged.png")

    # Someone works late in 3101: an override keeps it out of the sweep.
    await tab(page, "schedule")
    form = page.locator("#override-form")
    await form.locator('select[name="room"]').select_option("r3101")
    await form.locator('input[name="reason"]').fill("项目赶工")
    await form.locator('button[type="submit"]').click()
    await expect(page.locator('#overrides tr[data-room="r3101"].ov-active')).to_be_visible(timeout=STEP_MS)
    await page.screenshot(path=shots / "06-override.png")

    # 2119 lit and empty; sensors report changes, so switch its lights through off to on.
    if light_on(live, "r2119-light"):
        live.sim.set_room("r2119", lights=False)
        await asyncio.sleep(1.5)  # long enough for the light to report OFF before it reports ON
    live.sim.set_room("r2119", occupied=False, lights=True)
    await tab(page, "rooms")
    room = page.locator("#room-r2119")
    await expect(room).to_have_attribute("data-lights", "on", timeout=STEP_MS)
    await expect(page.locator("#room-r3101 .override")).to_be_visible()
    await page.screenshot(path=shots / "07-rooms-before-sweep.png")

    await tab(page, "schedule")
    await page.click("#run-sweep")
    await expect(page.locator(".toast", has_text="已关断")).to_be_visible(timeout=STEP_MS)
    await tab(page, "rooms")
    await expect(room).to_have_attribute("data-lights", "off", timeout=STEP_MS)
    assert light_on(live, "r2119-light") is False
    await page.screenshot(path=shots / "08-rooms-after-sweep.png", full_page=True)

    # A single switch by hand: 1102's light, from its room card; the simulated light obeys.
    controls = page.locator("#controls-r1102")
    await controls.locator("summary").click()
    await controls.locator(".control", has_text="r1102-light").locator("button", has_text="关").click()
    await expect(page.locator(".toast", has_text="已确认")).to_be_visible(timeout=STEP_MS)
    assert light_on(live, "r1102-light") is False

    # 3101's people go home: end the override early.
    await tab(page, "schedule")
    override = page.locator('#overrides tr[data-room="r3101"]')
    await override.locator("button", has_text="结束").click()
    await expect(override).to_have_class("ov-ended", timeout=STEP_MS)

    await tab(page, "audit")
    await expect(page.locator('#panel-audit tr[data-result="confirmed"][data-device="r2119-light"]')).to_be_visible()
    await page.screenshot(path=shots / "09-audit.png")
    await tab(page, "energy")
    await expect(page.locator("#panel-energy .chart[data-chart] canvas")).to_be_visible()
    await page.screenshot(path=shots / "10-energy.png", full_page=True)

    # The same session on a phone: one column, nothing wider than the screen.
    session = await context.storage_state()
    phone = await browser.new_context(viewport=PHONE, device_scale_factor=2, locale="zh-CN", storage_state=session)
    small = await phone.new_page()
    for view in ("supply", "rooms", "alarms"):
        await small.goto(f"{live.url}/?view={view}")
        await expect(small.locator(f"#panel-{view}")).to_be_visible()
        width = await small.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{view} is {width}px wide on a {PHONE['width']}px phone"
        await small.screenshot(path=shots / f"11-phone-{view}.png")
    await phone.close()

    # A viewer sees the same site and no control buttons.
    viewer = await browser.new_context(viewport=DESKTOP, locale="zh-CN")
    watcher = await viewer.new_page()
    await log_in(watcher, live.url, live.svc.keys["viewer"])
    await expect(watcher.locator('.tabs a[data-view="audit"]')).to_have_count(0)
    hidden_for_viewers = {
        "alarms": "button.ack, form.shelve",
        "rooms": "details.controls",
        "schedule": "#run-sweep, #override-form",
    }
    for view, hidden in hidden_for_viewers.items():
        await tab(watcher, view)
        await expect(watcher.locator(hidden)).to_have_count(0)
    await tab(watcher, "alarms")
    await expect(watcher.locator('li.alarm[data-type="redundancy_lost"]')).to_be_visible()
    await watcher.screenshot(path=shots / "12-viewer-alarms.png")
    await viewer.close()

    # English labels with one click; the choice sticks.
    await page.click("a.lang")
    await expect(page.locator(".tabs")).to_contain_text("Supply")
    await tab(page, "supply")
    # An open rules list neither stops the live refresh nor closes on it.
    await page.click("#compliance-rules summary")
    stamp = await page.locator("#panel-supply .updated").inner_text()
    await expect(page.locator("#panel-supply .updated")).not_to_have_text(stamp, timeout=STEP_MS)
    await expect(page.locator("#compliance-rules")).to_have_attribute("open", "")
    await page.screenshot(path=shots / "13-supply-en.png")
    await context.close()
    assert not errors, errors
