"""The API's description (OpenAPI document, Swagger UI, ReDoc): for any key or dashboard session.

The document lists every route, parameter and id format of this site's service; like the data, it
is shown only to someone the site gave a key. Swagger UI and ReDoc fetch it from the same origin,
so a browser logged in to the dashboard (its session cookie) can read them.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from service.api.deps import Viewer

router = APIRouter(tags=["docs"])

TITLE = "wattkeeper API"


@router.get("/openapi.json", include_in_schema=False)
async def openapi_document(request: Request, _: Viewer) -> JSONResponse:
    """The OpenAPI document (viewer)."""
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False)
async def swagger_ui(_: Viewer) -> HTMLResponse:
    """Swagger UI over the document (viewer)."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title=TITLE)


@router.get("/redoc", include_in_schema=False)
async def redoc(_: Viewer) -> HTMLResponse:
    """ReDoc over the document (viewer)."""
    return get_redoc_html(openapi_url="/openapi.json", title=TITLE)
