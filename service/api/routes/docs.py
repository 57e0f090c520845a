"""The API's description (OpenAPI document, Swagger UI, ReDoc): for any key or dashboard session.

The document lists every route, parameter and id format of this site's service; like the data, it
is shown only to someone the site gave a key. Swagger UI and ReDoc fetch it from the same origin,
so a browser logged in to the dashboard (its session cookie) can read them. Their scripts and
styles come from this service too (the files fastapi-offline ships), never from a CDN: sites are
often offline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from service.api.deps import Viewer

router = APIRouter(tags=["docs"])

TITLE = "wattkeeper API"
OPENAPI_URL = "/openapi.json"
FAVICON_URL = "/docs/favicon.png"
ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
# URL -> file of the vendored Swagger UI and ReDoc.
ASSET_FILES = {
    "/docs/swagger-ui-bundle.js": "swagger-ui-bundle.js",
    "/docs/swagger-ui.css": "swagger-ui.css",
    "/docs/redoc.standalone.js": "redoc.standalone.js",
    "/docs/favicon.png": "favicon.png",
}
# Nothing from elsewhere, even what the bundles would fetch by themselves (ReDoc's own logo).
# Both pages start their viewer with an inline script; ReDoc runs its search in a blob: worker.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'"
)


@router.get(OPENAPI_URL, include_in_schema=False)
async def openapi_document(request: Request, _: Viewer) -> JSONResponse:
    """The OpenAPI document (viewer)."""
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False)
async def swagger_ui(_: Viewer) -> HTMLResponse:
    """Swagger UI over the document (viewer)."""
    assets = {"swagger_js_url": "/docs/swagger-ui-bundle.js", "swagger_css_url": "/docs/swagger-ui.css"}
    return _viewer(get_swagger_ui_html, swagger_favicon_url=FAVICON_URL, **assets)


@router.get("/redoc", include_in_schema=False)
async def redoc(_: Viewer) -> HTMLResponse:
    """ReDoc over the document (viewer)."""
    assets = {"redoc_js_url": "/docs/redoc.standalone.js", "redoc_favicon_url": FAVICON_URL}
    return _viewer(get_redoc_html, with_google_fonts=False, **assets)


def _viewer(page: Callable[..., HTMLResponse], **assets: Any) -> HTMLResponse:
    """Swagger UI or ReDoc over this document, with the assets this service serves."""
    return _under_csp(page(openapi_url=OPENAPI_URL, title=TITLE, **assets))


def _under_csp(page: HTMLResponse) -> HTMLResponse:
    """A documentation page that may load only what this service serves (the vendored assets)."""
    page.headers["Content-Security-Policy"] = CSP
    return page


def _asset_route(url: str, name: str) -> None:
    async def asset(_: Viewer) -> FileResponse:
        return FileResponse(ASSETS / name, headers={"Cache-Control": "private, max-age=86400"})

    asset.__doc__ = f"{name} of Swagger UI / ReDoc, served here (viewer)."
    router.add_api_route(url, asset, methods=["GET"], include_in_schema=False, name=f"docs-{name}")


for _url, _name in ASSET_FILES.items():
    _asset_route(_url, _name)
