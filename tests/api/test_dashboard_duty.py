"""The dashboard for the people on duty (issue 18), in Debian's Chromium against the simulated site.

- a lost grid source: the high alarm plays the sound, raises a notification, puts the count in the
  tab title and blinks the badge until acknowledged; the alarm reads Chinese, rendered from its type
  and values;
- a room's trend opens from its card; the energy explorer draws a month of bars;
- every page in Chinese has no untranslated text; every view on a 390x844 phone fits the screen
  (screenshots of each in test-output/screenshots/);
- a viewer opening a forbidden view is told so and gets no controls;
- the service stopped: panels grey out with "最后更新 HH:MM:SS" and one banner, no toasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from service.config.site import Site
from service.store.db import Rollup
from simulators.runner import Simulation
from tests.api import test_dashboard_browser as evening
from tests.api.conftest import SEED, SIM_START, Live, _supply_seen
from tests.api.test_dashboard_browser import ALARM_S, DESKTOP, PHONE, STEP_MS, log_in, seed_energy
from tests.conftest import ROOT
from tests.harness import running_service

# A duty PC runs the dashboard in a kiosk browser that may play sound without a click first.
DUTY_ARGS = [*evening.CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, allowed to play the alarm sound."""
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path="/usr/bin/chromium", args=DUTY_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


pytestmark = pytest.mark.browser

SHOTS = ROOT / "test-output" / "screenshots"
VIEWS = ("supply", "rooms", "alarms", "energy", "schedule", "audit")
# Latin text a Chinese page may show: units, standards, product names, ids (added per page below).
LATIN_OK = {
    "CNY/kWh",
    "CSV",
    "kV",
    "kW",
    "kWh",
    "V",
    "W",
    "A",
    "Hz",
    "CNY",
    "lx",
    "s",
    "GB/T",
    "wattkeeper",
    "English",
    "I",
    "II",
    "G",
    "h",
}
WORD = re.compile(r"[A-Za-z][A-Za-z_./-]*[A-Za-z]|[A-Za-z]")


@pytest.fixture(scope="module")
def screenshots() -> Path:
    """test-output/screenshots/, emptied for this run."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    print(f"\nphone screenshots: {SHOTS}")
    return SHOTS


def site_ids(site: Site) -> set[str]:
    """Every id and name a page may show as it is written in the site file."""
    ids = {site.site.id, site.site.name}
    ids |= {r.id for r in site.rooms} | {d.id for d in site.devices} | {s.id for s in site.sources}
    ids |= {g.id for g in site.generators} | {t.id for t in site.transfer_switches} | {d.id for d in site.departments}
    ids |= {s.substation for s in site.sources} | {s.bus_section for s in site.sources}
    ids |= {r.name for r in site.rooms} | {d.name for d in site.departments}
    return ids | {w for text in ids for w in WORD.findall(text)}


async def untranslated(page: Page, allowed: set[str]) -> list[str]:
    """Visible text with Latin words that are neither ids, units nor names: English left on a Chinese page."""
    texts: list[str] = await page.evaluate(
        """() => {
          const out = [];
          const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
          while (walk.nextNode()) {
            const n = walk.currentNode, el = n.parentElement;
            if (!el || el.closest("script, style, [hidden], dialog:not([open])")) continue;
            const s = getComputedStyle(el);
            if (s.display === "none" || s.visibility === "hidden") continue;
            const text = n.textContent.trim();
            if (text) out.push(text);
          }
          document.querySelectorAll("input[placeholder], [title], [aria-label]").forEach((el) => {
            for (const a of ["placeholder", "title", "aria-label"]) {
              if (el.getAttribute(a)) out.push(el.getAttribute(a));
            }
          });
          return out;
        }"""
    )
    bad = []
    for text in texts:
        words = [w for w in WORD.findall(text.replace("°C", "")) if w not in LATIN_OK and w not in allowed]
        # ids like r2119-light or grid-a are matched whole above; what is left is English words.
        if words:
            bad.append(f"{text!r}: {words}")
    return bad


async def seed_temperature(live: Live, room_ac: str) -> int:
    """A day of 1-minute rollups of a thermostat's temperature and setpoint, as the core stores them."""
    svc = live.svc.services
    now = svc.clock.now().replace(second=0, microsecond=0)
    rows = []
    for m in range(24 * 60, 0, -1):
        minute = now - timedelta(minutes=m)
        temp = 24.0 + 2.0 * ((minute.hour + minute.minute / 60) % 12) / 12
        for point, value in (("local_temperature", temp), ("cooling_setpoint", 26.0)):
            rows.append(
                Rollup(
                    device=room_ac, point=point, minute=minute, min=value, max=value, mean=value, last=value, count=1
                )
            )
    await svc.store.upsert_rollups(rows)
    return 24 * 60


async def test_on_duty(live: Live, browser: Browser, screenshots: Path) -> None:
    """Attention on a high alarm, trends, the explorer, the zh walk, the phone, a forbidden view."""
    await seed_energy(live.svc.services)
    seeded = await seed_temperature(live, "r2119-ac")
    context = await browser.new_context(viewport=DESKTOP, locale="zh-CN")
    await context.grant_permissions(["notifications"], origin=live.url)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await log_in(page, live.url, live.svc.keys["operator"])  # the login page itself answers 401
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    title = await page.title()
    assert not title.startswith("(")

    # A grid source lost: sound, notification, "(1)" in the title, a blinking badge.
    live.sim.fault("source_loss", "grid-a")
    await expect(page.locator("#badge .badge.urgent")).to_be_visible(timeout=ALARM_S)
    await expect(page).to_have_title(re.compile(r"^\(1\) "), timeout=STEP_MS)
    await expect(page.locator("#mute")).not_to_have_attribute("data-played", "0", timeout=STEP_MS)
    await expect(page.locator("#notify")).to_have_attribute("data-shown", "1", timeout=STEP_MS)
    blink = await page.locator("#badge .sev-chip.sev-high").evaluate("el => getComputedStyle(el).animationName")
    assert blink == "wk-blink"
    await page.goto(live.url + "/?view=alarms")
    alarm = page.locator('li.alarm[data-type="redundancy_lost"]')
    await expect(alarm.locator(".msg")).to_contain_text("路电源可用")
    await expect(alarm.locator(".subject")).to_contain_text("全站")
    await page.screenshot(path=screenshots / "desktop-alarm-attention.png")
    # Muting is remembered across pages.
    await page.click("#mute")
    await page.reload()
    await expect(page.locator("#mute")).to_have_attribute("aria-pressed", "true")
    await page.click("#mute")
    await alarm.locator("button.ack").click()
    await expect(page.locator("#badge .badge.urgent")).to_have_count(0, timeout=STEP_MS)
    await expect(page).not_to_have_title(re.compile(r"^\(\d+\) "), timeout=STEP_MS)

    # The trend of a room, from its card: the seeded day of temperatures, minute by minute.
    await page.goto(live.url + "/?view=rooms")
    await page.click("#room-r2119 header h3")
    trend = page.locator("dialog#trend")
    await expect(trend).to_have_attribute("data-state", "drawn", timeout=STEP_MS)
    points = int(await trend.get_attribute("data-points") or 0)
    assert points >= 2 * seeded - 4, points  # temperature and setpoint for (nearly) every minute
    await expect(trend.locator("canvas")).to_be_visible()
    await page.screenshot(path=screenshots / "desktop-trend-room.png")
    await trend.locator('button[data-range="30d"]').click()
    await expect(trend).to_have_attribute("data-range", "30d")
    await expect(trend).to_have_attribute("data-state", "drawn", timeout=STEP_MS)
    await expect(trend.locator(".trend-note")).to_be_hidden()
    # A year reaches past the rollups' 90 days; this service has no InfluxDB to read the rest from.
    await trend.locator('button[data-range="12m"]').click()
    await expect(trend).to_have_attribute("data-range", "12m")
    await expect(trend).to_have_attribute("data-state", "drawn", timeout=STEP_MS)
    await expect(trend.locator(".trend-note")).to_have_text(re.compile(r"^超过 90 天的历史需要 InfluxDB"))
    await page.screenshot(path=screenshots / "desktop-trend-room-year.png")
    await trend.locator("button", has_text="关闭").click()

    # A source's trend from the single-line diagram.
    await page.goto(live.url + "/?view=supply")
    await page.click('.sld [data-node="grid-b"]')
    await expect(trend).to_have_attribute("data-state", "drawn", timeout=STEP_MS)
    await trend.locator("button", has_text="关闭").click()

    # The energy explorer: this month's bars by band, month-over-month, top rooms.
    await page.goto(live.url + "/?view=energy")
    explorer = page.locator("#explorer-body")
    await expect(explorer.locator(".chart[data-bars] canvas")).to_be_visible(timeout=STEP_MS)
    total = float(await explorer.locator("[data-total-kwh]").get_attribute("data-total-kwh") or 0)
    assert total > 0
    await explorer.locator('select[name="period"]').select_option("year")
    await expect(page.locator('#explorer-body[data-period="year"] .chart canvas')).to_be_visible(timeout=STEP_MS)
    await page.screenshot(path=screenshots / "desktop-energy-explorer.png", full_page=True)
    # A department's trend from the explorer; 12 months come from the seeded 15-minute energy.
    dept = live.svc.services.site.departments[0]
    await page.locator('#explorer-body select[name="department"]').select_option(dept.id)
    await page.locator(f'[data-trend="department:{dept.id}"]').click()
    await expect(trend).to_have_attribute("data-state", "drawn", timeout=STEP_MS)
    await trend.locator('button[data-range="12m"]').click()
    await expect(trend).to_have_attribute("data-range", "12m")
    await expect(trend).to_have_attribute("data-state", "drawn", timeout=STEP_MS)
    days = live.svc.services.clock.now().astimezone(live.svc.services.site.site.tz).day
    assert int(await trend.get_attribute("data-points") or 0) >= days - 1
    await expect(trend.locator(".trend-note")).to_be_hidden()  # the meter's energy intervals reach back
    await trend.locator("button", has_text="关闭").click()

    # Room controls: the AC within the rule, a refused setpoint with its reason, all off after a confirmation.
    async with live.client("operator") as api:
        r = await api.post("/api/devices/r2119-ac/commands", json={"command": "cooling_setpoint", "value": 24})
    assert (r.status_code, r.json()["status"]) == (403, "refused")
    assert "below cooling_min_c 26" in r.json()["detail"]
    assert live.sim.state()["devices"]["r2119-ac"]["cooling_setpoint"] != 24
    await page.goto(live.url + "/?view=rooms")
    controls = page.locator("#controls-r2119")
    await controls.locator("summary").click()
    ac = controls.locator("form.ac-form")
    await ac.locator('select[name="mode"]').select_option("cool")
    await ac.locator('input[name="setpoint"]').fill("25")
    await ac.locator("button[type=submit]").click()
    assert (
        await ac.locator('input[name="setpoint"]').evaluate("el => el.validationMessage") == "制冷设定不能低于 26.0 °C"
    )
    await ac.locator('input[name="setpoint"]').fill("27")
    await ac.locator("button[type=submit]").click()
    await expect(page.locator(".toast", has_text="已确认 · r2119-ac")).to_be_visible(timeout=STEP_MS)
    state = live.sim.state()["devices"]["r2119-ac"]
    assert (state["system_mode"], state["cooling_setpoint"]) == ("cool", 27)
    await expect(controls.locator(".control", has_text="灯 r2119-light")).to_be_visible()
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await controls.locator("button.all-off").click()
    await expect(page.locator(".toast", has_text="全部关闭 · 已确认")).to_be_visible(timeout=STEP_MS)
    devices = live.sim.state()["devices"]
    assert devices["r2119-light"]["on"] is False and devices["r2119-plug"]["on"] is False
    assert devices["r2119-ac"]["system_mode"] == "off"
    await page.screenshot(path=screenshots / "desktop-room-controls.png")

    # Every page in Chinese: no English left.
    allowed = site_ids(live.svc.services.site)
    problems: dict[str, list[str]] = {}
    for view in VIEWS:
        await page.goto(f"{live.url}/?view={view}&lang=zh")
        await expect(page.locator(f"#panel-{view}")).to_be_visible()
        await page.wait_for_load_state("networkidle")
        bad = await untranslated(page, allowed)
        if bad:
            problems[view] = bad
    assert not problems, "\n".join(f"{view}: {text}" for view, bad in problems.items() for text in bad)

    # The phone: nothing wider than the screen on any view; a screenshot of each.
    session = await context.storage_state()
    phone = await browser.new_context(viewport=PHONE, device_scale_factor=2, locale="zh-CN", storage_state=session)
    small = await phone.new_page()
    for view in VIEWS:
        await small.goto(f"{live.url}/?view={view}")
        await expect(small.locator(f"#panel-{view}")).to_be_visible()
        await small.wait_for_load_state("networkidle")
        wide = await small.evaluate(
            """() => [...document.querySelectorAll("body *")]
                 .filter((el) => el.getBoundingClientRect().right > document.documentElement.clientWidth + 1
                          && !el.closest(".tabs, .table-wrap"))
                 .slice(0, 5).map((el) => el.tagName + "." + el.className)"""
        )
        width = await small.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"] and not wide, f"{view}: {width}px wide, overflowing: {wide}"
        await small.screenshot(path=screenshots / f"phone-{view}.png", full_page=True)
    await phone.close()

    # A viewer opening the audit is told it is not for them, and gets no controls.
    viewer = await browser.new_context(viewport=PHONE, locale="zh-CN")
    watcher = await viewer.new_page()
    await log_in(watcher, live.url, live.svc.keys["viewer"])
    await watcher.goto(live.url + "/?view=audit")
    await expect(watcher.locator(".notice.forbidden")).to_contain_text("审计")
    await expect(watcher.locator("#panel-audit")).to_have_count(0)
    await watcher.goto(live.url + "/?view=rooms")
    await expect(watcher.locator("details.controls")).to_have_count(0)
    await watcher.screenshot(path=screenshots / "phone-viewer-forbidden.png")
    await viewer.close()
    await context.close()
    assert not errors, errors


async def test_stale_when_the_service_stops(
    demo_site: Site, tmp_path: Path, browser: Browser, screenshots: Path
) -> None:
    """Stopping the service greys every panel with its last update time and one banner, no toasts."""
    async with Simulation(demo_site, control_port=None, seed=SEED, start=SIM_START) as sim:
        stack = contextlib.AsyncExitStack()
        svc = await stack.enter_async_context(running_service(demo_site, tmp_path))
        try:
            await _supply_seen(svc)
            context = await browser.new_context(viewport=DESKTOP, locale="zh-CN")
            page = await context.new_page()
            await log_in(page, svc.url, svc.keys["operator"])
            await expect(page.locator("#stale-banner")).to_be_hidden()
            await expect(page.locator(".stale-note")).to_have_count(0)
            # A grid meter that stops answering (polled every second): the supply panel greys out
            # after three missed polls and comes back when the meter does; the service is up throughout.
            sim.fault("device_offline", "meter-grid-a")
            supply_note = page.locator("#panel-supply .stale-note")
            await expect(supply_note).to_have_text(re.compile(r"^最后更新 \d\d:\d\d:\d\d$"), timeout=STEP_MS)
            await expect(page.locator("#stale-banner")).to_be_visible()
            await expect(page.locator("#live")).to_have_class("live on")
            sim.clear_faults()
            await expect(supply_note).to_have_count(0, timeout=STEP_MS)
            await expect(page.locator("#stale-banner")).to_be_hidden()
        finally:
            # The stop ends the page's event stream at once (service.api.server); the page must notice.
            stopping = asyncio.create_task(stack.aclose())
        # The stopped service: within 10 s a grey panel, its last update time, one banner.
        await expect(page.locator("#stale-banner")).to_be_visible(timeout=10_000)
        await expect(page.locator("#stale-banner")).to_have_count(1)
        note = page.locator("#panel-supply .stale-note")
        await expect(note).to_have_text(re.compile(r"^最后更新 \d\d:\d\d:\d\d$"))
        await expect(page.locator("#panel-supply")).to_have_class(re.compile(r"\bstale\b"))
        await page.wait_for_timeout(4000)  # a few failed polls and reconnects later: still no toasts
        await expect(page.locator(".toast")).to_have_count(0)
        await expect(page.locator("#live")).to_have_class("live off")
        await page.screenshot(path=screenshots / "desktop-stale.png")
        await context.close()
        await stopping
