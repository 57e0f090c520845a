"""Every router of the API, in the order they are mounted."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routes import alarms, compliance, events, health, live

ROUTERS: list[APIRouter] = [health.router, live.router, alarms.router, compliance.router, events.router]
