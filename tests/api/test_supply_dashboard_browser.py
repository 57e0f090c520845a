"""The generator controller's keys on the dashboard (Chromium): admin only, a reason and a
confirmation before anything is sent, the reason kept in the audit; the simulated controller obeys."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Dialog, expect

from tests.api.conftest import Live
from tests.api.test_dashboard_browser import DESKTOP, STEP_MS, browser, log_in
from tests.harness import eventually

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the fixture, used by name


async def test_generator_keys_need_admin_a_reason_and_a_confirmation(live: Live, browser: Browser) -> None:
    context = await browser.new_context(viewport=DESKTOP, locale="en-GB")
    page = await context.new_page()
    dialogs: list[tuple[str, str]] = []
    answers = {"prompt": "", "confirm": True}

    async def answer(dialog: Dialog) -> None:
        dialogs.append((dialog.type, dialog.message))
        if dialog.type == "prompt" and answers["prompt"] is not None:
            await dialog.accept(str(answers["prompt"]))
        elif dialog.type == "confirm" and answers["confirm"]:
            await dialog.accept()
        else:
            await dialog.dismiss()

    page.on("dialog", answer)
    controls = page.locator('[data-supply-controls="genset-1"]')

    # An operator sees the generator, not its keys.
    await log_in(page, live.url, live.svc.keys["operator"])
    await expect(page.locator("#panel-supply .tile", has_text="gen-1")).to_be_visible()
    assert await controls.count() == 0
    await context.clear_cookies()

    await log_in(page, live.url, live.svc.keys["admin"])
    manual = controls.locator('button[data-key="manual"]')
    await expect(manual).to_be_visible()

    # Cancelling the reason prompt sends nothing.
    answers["prompt"] = None
    await manual.click()
    await eventually(lambda: _true(len(dialogs) == 1))
    assert dialogs[0][0] == "prompt" and "reason" in dialogs[0][1]
    # Giving a reason but not confirming sends nothing either.
    answers["prompt"] = "monthly test run"
    answers["confirm"] = False
    await manual.click()
    await eventually(lambda: _true(len(dialogs) == 3))
    assert dialogs[2][0] == "confirm" and "genset-1" in dialogs[2][1]
    assert live.sim.state()["generators"]["gen-1"]["mode"] == "auto"
    assert await live.svc.services.store.list_audit(device="genset-1") == []

    # A reason and a confirmation: the controller goes to manual, the audit keeps the reason.
    answers["confirm"] = True
    await manual.click()
    await expect(page.locator(".toast").last).to_be_visible(timeout=STEP_MS)
    await eventually(lambda: _true(live.sim.state()["generators"]["gen-1"]["mode"] == "manual"))
    (entry,) = await live.svc.services.store.list_audit(device="genset-1")
    assert (entry.result, entry.new) == ("confirmed", 35702)
    assert entry.detail.startswith("reason: monthly test run")

    answers["prompt"] = "test run over"
    await controls.locator('button[data-key="auto"]').click()
    await eventually(lambda: _true(live.sim.state()["generators"]["gen-1"]["mode"] == "auto"))
    await context.close()


async def _true(flag: bool) -> bool:
    return flag
