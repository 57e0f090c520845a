"""/docs and /redoc work on a site without internet: every script and style comes from the service."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Request, Route, async_playwright

from service.config.site import Site
from tests.harness import running_service

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def linked(html: str) -> list[str]:
    """Every URL a page loads: script src, link href."""
    return re.findall(r"""<(?:script|link)[^>]*?(?:src|href)=["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_pages_load_nothing_from_elsewhere(demo_site: Site, tmp_path: Path, page: str) -> None:
    async with (
        running_service(demo_site, tmp_path, drivers=False) as svc,
        svc.client("viewer") as viewer,
        svc.client("") as anon,
    ):
        html = (await viewer.get(page)).text
        urls = linked(html)
        assert urls, html
        assert [u for u in urls if not u.startswith("/")] == []
        assert "fonts.googleapis" not in html and "cdn." not in html
        for url in urls:
            r = await viewer.get(url)
            assert r.status_code == 200 and len(r.content) > 1000, url
            assert (await anon.get(url)).status_code == 401, url


@pytest.mark.browser
async def test_swagger_ui_renders_with_the_internet_cut_off(demo_site: Site, tmp_path: Path) -> None:
    async with running_service(demo_site, tmp_path, drivers=False) as svc:
        elsewhere: list[str] = []

        async def only_here(route: Route, request: Request) -> None:
            if request.url.startswith(svc.url):
                await route.continue_()
            else:
                elsewhere.append(request.url)
                await route.abort()

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(
                    extra_http_headers={"Authorization": f"Bearer {svc.keys['viewer']}"}
                )
                await context.route("**/*", only_here)
                page = await context.new_page()
                await page.goto(f"{svc.url}/docs")
                await page.wait_for_selector(".swagger-ui .information-container .title", timeout=30_000)
                title = await page.inner_text(".swagger-ui .information-container .title")
                operations = await page.locator(".opblock").count()
                await page.goto(f"{svc.url}/redoc")
                await page.wait_for_selector("h1", timeout=30_000)
                redoc_title = await page.inner_text("h1")
            finally:
                await browser.close()
    assert "wattkeeper" in title
    assert operations >= 20
    assert "wattkeeper" in redoc_title
    assert elsewhere == []


def test_assets_are_shipped_in_the_installed_package() -> None:
    from service.api.routes.docs import ASSET_FILES, ASSETS

    for name in ASSET_FILES.values():
        assert (ASSETS / name).stat().st_size > 1000, name
