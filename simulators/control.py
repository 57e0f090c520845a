"""HTTP control API of the simulators (DESIGN.md §4): the world's state, faults, room overrides."""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulators.office import AcMode
from simulators.world import FaultName, UnknownRoom, WorldError


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FaultRequest(_Body):
    """POST /sim/faults."""

    fault: FaultName
    target: str = Field(min_length=1, max_length=64)
    delay_s: float | None = Field(None, gt=0, le=3600, description="generator_slow_start: extra start time")

    @model_validator(mode="after")
    def _delay_only_for_slow_start(self) -> FaultRequest:
        if self.delay_s is not None and self.fault != "generator_slow_start":
            raise ValueError("delay_s applies to generator_slow_start only")
        return self

    def params(self) -> dict[str, float]:
        """Extra parameters of the fault."""
        return {} if self.delay_s is None else {"delay_s": self.delay_s}


class AcOverride(_Body):
    """The `ac` field of a room override."""

    mode: AcMode | None = None
    # the union of the heating (5-30 °C) and cooling (16-32 °C) ranges; the world checks the one of the mode
    setpoint: float | None = Field(None, ge=5, le=32)

    @model_validator(mode="after")
    def _something(self) -> AcOverride:
        if self.mode is None and self.setpoint is None:
            raise ValueError("ac needs mode or setpoint")
        return self


class RoomOverride(_Body):
    """POST /sim/rooms/{room}: fields held until set again or released."""

    occupied: bool | None = None
    lights: bool | None = None
    temperature: float | None = Field(None, ge=-20, le=60)
    ac: AcOverride | None = None
    door_open: bool | None = None
    plugs: dict[str, float] | None = Field(None, description="device id -> watts the appliance draws")
    illuminance: float | None = Field(None, ge=0, le=200_000, description="lux the room's occupancy sensors see")

    @model_validator(mode="after")
    def _something(self) -> RoomOverride:
        if not self.model_fields_set:
            raise ValueError("give at least one of occupied, lights, temperature, ac, door_open, plugs, illuminance")
        for device_id, watts in (self.plugs or {}).items():
            if not 0 <= watts <= 10_000:
                raise ValueError(f"plugs.{device_id}: {watts} W is outside 0..10000")
        return self


class SimControl(Protocol):
    """What the API drives (simulators.runner.Simulation)."""

    def state(self) -> dict[str, Any]: ...

    def fault(self, name: str, target: str, **params: float) -> None: ...

    def clear_faults(self) -> None: ...

    def set_room(self, room_id: str, **fields: Any) -> None: ...

    def release_room(self, room_id: str) -> None: ...


def create_app(sim: SimControl) -> FastAPI:
    """The control API app for one simulation."""
    app = FastAPI(title="wattkeeper simulators", description="Control the simulated site (DESIGN.md §4).")
    # handlers are async so they run on the loop that steps the world, never beside it in a thread

    @app.exception_handler(UnknownRoom)
    async def _unknown_room(_request: Request, exc: UnknownRoom) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(WorldError)
    async def _bad_request(_request: Request, exc: WorldError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/sim/state")
    async def get_state() -> dict[str, Any]:
        """The whole simulated world."""
        return sim.state()

    @app.get("/sim/faults")
    async def get_faults() -> dict[str, Any]:
        """Faults in force."""
        return {"faults": sim.state()["faults"]}

    @app.post("/sim/faults")
    async def post_fault(body: FaultRequest) -> dict[str, Any]:
        """Inject a fault."""
        sim.fault(body.fault, body.target, **body.params())
        return {"faults": sim.state()["faults"]}

    @app.delete("/sim/faults")
    async def delete_faults() -> dict[str, Any]:
        """Clear every fault and restore every source."""
        sim.clear_faults()
        return {"faults": sim.state()["faults"]}

    @app.post("/sim/rooms/{room}")
    async def post_room(room: str, body: RoomOverride) -> dict[str, Any]:
        """Hold room fields (occupied, lights, temperature, ac, door_open, plugs, illuminance)."""
        sim.set_room(room, **body.model_dump(exclude_unset=True))
        return dict(sim.state()["rooms"][room])

    @app.delete("/sim/rooms/{room}")
    async def delete_room(room: str) -> dict[str, Any]:
        """Hand the room back to its model."""
        sim.release_room(room)
        return dict(sim.state()["rooms"][room])

    return app
