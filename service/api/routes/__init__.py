"""Every router of the API, in the order they are mounted."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routes import (
    alarms,
    audit,
    compliance,
    control,
    dashboard,
    docs,
    duty,
    events,
    hazards,
    health,
    live,
    reports,
    sites,
    telemetry,
)

ROUTERS: list[APIRouter] = [
    health.router,
    live.router,
    alarms.router,
    compliance.router,
    events.router,
    control.router,
    reports.router,
    telemetry.router,
    audit.router,
    dashboard.router,
    docs.router,
    hazards.router,
    duty.router,
    sites.router,
]
