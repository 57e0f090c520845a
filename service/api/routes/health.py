"""Open endpoints: liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.api.deps import ServicesDep
from service.api.models import Health
from service.metrics import CONTENT_TYPE_LATEST

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness (no key needed)")
async def healthz(svc: ServicesDep) -> Health:
    """ok while the service runs; degraded when the broker is away or no device answers."""
    devices = svc.core.state.devices()
    online = sum(1 for d in devices if d.online)
    mqtt = svc.hub.mqtt_connected if svc.hub is not None else None
    degraded = mqtt is False or (devices and online == 0)
    return Health(
        status="degraded" if degraded else "ok",
        site=svc.site.site.id,
        devices_online=online,
        devices_total=len(devices),
        mqtt_connected=mqtt,
        outbox_depth=svc.sink.outbox_depth if svc.sink is not None else None,
        version="0.1.0",
        bus_owner=svc.bus.owner if svc.bus is not None else None,
    )


@router.get("/metrics", summary="Prometheus metrics (no key needed)", response_class=Response)
async def metrics(svc: ServicesDep) -> Response:
    """Readings ingested, rejects per device, outbox depth, dropped points, alarms by state, command results."""
    if svc.hub is not None:
        health = svc.hub.health()
        svc.core.record_rejects({d: h.rejects + h.rejected_deltas for d, h in health.items()})
        svc.core.record_clock_skew({d: h.clock_skew for d, h in health.items()})
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)
