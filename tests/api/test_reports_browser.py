"""The accountability view and the printable quarterly summary in Debian's Chromium, on seeded data
and an injected clock: month and quarter picked, violations and fines per department, the hazard
list with the overdue one marked, a hazard reported in one click from a supply alarm, and the A4
page (Chinese glyphs from a CJK font, no table wider than the page). Screenshots go to
test-output/reports/ (git-ignored)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypedDict

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from service.alarms.record import Alarm, AlarmState, Severity
from service.clock import ManualClock
from service.config.site import Site
from tests.conftest import ROOT
from tests.harness import RunningService, running_service
from tests.service.test_quarterly import seed, supply_and_hazards
from tests.service.test_violations import local, simulate_march

pytestmark = pytest.mark.browser

OUT = ROOT / "test-output" / "reports"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
A4_PX = 794  # 210 mm at 96 dpi
STEP_MS = 15_000
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def log_in(page: Page, svc: RunningService, role: str) -> None:
    await page.goto(svc.url + "/")
    await page.fill("#key", svc.keys[role])
    await page.click("button[type=submit]")
    await expect(page.locator("#panel-supply")).to_be_visible(timeout=STEP_MS)


async def test_accountability_view_and_printable_quarter(demo_site: Site, tmp_path: Path, browser: Browser) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    clock = ManualClock(local("2026-04-02 09:00"))
    async with running_service(demo_site, tmp_path, clock=clock, drivers=False) as svc:
        store = svc.services.store
        await seed(store)
        await simulate_march(demo_site, store)
        await supply_and_hazards(store)
        at = local("2026-04-02 08:50")
        backfeed = Alarm(id="bf-1", type="backfeed", severity=Severity.critical, subject="gen-1",
                         state=AlarmState.active_unacked, active=True, raised_at=at, updated_at=at,
                         message="gen-1: backfeed")  # fmt: skip
        await store.save_alarm(backfeed)
        svc.services.core.engine.restore([backfeed])

        page = await browser.new_page(viewport={"width": 1366, "height": 900}, locale="zh-CN")
        await log_in(page, svc, "admin")
        await page.goto(svc.url + "/?view=reports&month=2026-03&quarter=2026-Q1")
        table = page.locator("#violations-by-department")
        await expect(table).to_be_visible()
        marketing = table.locator('tr[data-department="marketing"]')
        await expect(marketing).to_contain_text("市场营销部")
        await expect(marketing.locator("td").nth(1)).to_have_text("2")  # 长明灯
        await expect(page.locator("#hazard-list tr.overdue")).to_have_count(1)
        await expect(page.locator("#hazard-list tr.overdue")).to_contain_text("逾期")
        await page.screenshot(path=OUT / "01-accountability.png", full_page=True)

        # A future month is refused in words, and the current one shown.
        await page.goto(svc.url + "/?view=reports&month=2099-01")
        await expect(page.locator(".notice")).to_contain_text("2099-01")

        # One click from a supply alarm: the hazard form prefilled from it.
        await page.goto(svc.url + "/?view=alarms")
        await page.locator('li[data-alarm-id="bf-1"] a.hazard-from').click()
        form = page.locator("#hazard-form")
        await expect(form.locator('input[name="title"]')).to_have_value(re.compile(r"^backfeed"))
        await expect(form.locator('input[name="source_alarm"]')).to_have_value("bf-1")
        await expect(form.locator('select[name="severity"]')).to_have_value("critical")
        await form.locator('button[type="submit"]').click()
        await expect(page.locator("#toasts")).not_to_be_empty(timeout=STEP_MS)
        created = [h for h in await store.list_hazards() if h.source_alarm == "bf-1"]
        assert len(created) == 1 and created[0].severity == "critical"

        # The printable quarter: A4 wide, Chinese by default, every table inside the page.
        session = await page.context.storage_state()
        printed = await browser.new_page(viewport={"width": A4_PX, "height": 1123}, storage_state=session)
        await printed.emulate_media(media="print")
        await printed.goto(svc.url + "/reports/quarterly/print?quarter=2026-Q1")
        await expect(printed.locator("h1")).to_contain_text("季度小结 2026-Q1")
        widths = await printed.evaluate(
            """() => [...document.querySelectorAll('table')].map(t => ({
                id: t.id, right: t.getBoundingClientRect().right, scroll: t.scrollWidth, client: t.clientWidth}))"""
        )
        assert len(widths) == 4
        for w in widths:
            assert w["right"] <= A4_PX and w["scroll"] <= w["client"] + 1, w
        await printed.screenshot(path=OUT / "02-quarterly-print.png", full_page=True)
        fonts = await _fonts_of(printed, "h1")
        cjk_fonts = [f for f in fonts if f["familyName"].startswith(("WenQuanYi", "Noto Sans CJK", "Source Han"))]
        title = await printed.locator("h1").inner_text()
        assert cjk_fonts and sum(f["glyphCount"] for f in cjk_fonts) >= len(CJK.findall(title)), fonts
        pdf = await printed.pdf(format="A4", print_background=True)
        assert pdf.startswith(b"%PDF") and 1 <= len(re.findall(rb"/Type\s*/Page\b", pdf)) <= 3
        (OUT / "quarterly-2026-Q1.pdf").write_bytes(pdf)


class PlatformFont(TypedDict):
    """What DevTools reports of one font used for a node (CSS.PlatformFontUsage, the fields read here)."""

    familyName: str
    glyphCount: int


async def _fonts_of(page: Page, selector: str) -> list[PlatformFont]:
    """The platform fonts Chromium drew a node's text with (DevTools CSS.getPlatformFontsForNode)."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("DOM.enable")
    await cdp.send("CSS.enable")
    root = await cdp.send("DOM.getDocument")
    node = await cdp.send("DOM.querySelector", {"nodeId": root["root"]["nodeId"], "selector": selector})
    result = await cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})
    return list(result["fonts"])
