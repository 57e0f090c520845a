"""Runs a simulated site: the world ticking in simulated time, its Modbus and MQTT faces, the control API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Iterator
from datetime import datetime
from types import TracebackType
from typing import Any

import uvicorn

from drivers.profiles import shadowed_profiles
from service.config.site import Site
from simulators.control import RoomOverride, create_app
from simulators.modbus_face import ModbusFace
from simulators.mqtt_face import SIMULATED_PROFILES, MqttFace
from simulators.registers import REGISTER_MAPS
from simulators.world import QUANTUM_S, World

log = logging.getLogger(__name__)

TICK_S = 0.1  # real seconds between world steps
MAX_LAG_S = 2.0  # real seconds of lag the world catches up after a stall; beyond that, time is skipped


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: whoever runs the simulation decides what signals do."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave signal handlers alone."""
        yield


class UnsimulatedDevices(ValueError):
    """Devices whose profile no simulator models: refused rather than silently left without a listener."""


def unsimulated(site: Site) -> list[str]:
    """'device (profile)' for every device of the site that no simulator models."""
    out = []
    replaced = shadowed_profiles()
    for dev in site.devices:
        modelled = REGISTER_MAPS if dev.driver == "modbus" else SIMULATED_PROFILES
        if dev.profile in replaced:
            # The simulators speak the shipped map; a site's own file of that name may differ.
            out.append(f"{dev.id} ({dev.profile} from {replaced[dev.profile]})")
        elif dev.profile not in modelled:
            out.append(f"{dev.id} ({dev.profile})")
    return out


class Simulation:
    """Every simulated device of a site, live on its sockets, for as long as the context is open."""

    def __init__(
        self,
        site: Site,
        *,
        control_port: int | None = 8100,
        speed: float = 1.0,
        seed: int = 0,
        mqtt_url: str | None = None,
        start: datetime | None = None,
        generator_start_s: float | None = None,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0 (0 holds simulated time still)")
        missing = unsimulated(site)
        if missing:
            # A device without a listener would still say "online" in /sim/state: refuse instead.
            raise UnsimulatedDevices(
                f"no simulator for {', '.join(missing)}; the simulators model the profiles "
                f"{', '.join(sorted({*REGISTER_MAPS, *SIMULATED_PROFILES}))}"
            )
        self.site = site
        self.control_port = control_port
        self.speed = speed
        self.seed = seed
        self.mqtt_url = mqtt_url or site.mqtt.url
        self.world = World(
            site,
            seed=seed,
            start=start or datetime.now(site.site.tz),
            generator_start_s=generator_start_s,
        )
        self._modbus = ModbusFace(self.world)
        self._mqtt = MqttFace(self.world, self.mqtt_url, client_tag=secrets.token_hex(3))
        self._http: _Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        # Set when the world is changed from outside (a fault, a room held): the devices report at
        # once, as real ones do on a change, instead of at the next tick.
        self._nudge = asyncio.Event()
        self._stopping = False

    async def __aenter__(self) -> Simulation:
        """Start the Modbus servers, connect the MQTT devices, open the control API, start the clock."""
        await self._modbus.start()
        try:
            await self._mqtt.start()
            if self.control_port is not None:
                await self._start_http(self.control_port)
        except BaseException:
            await self._stop()
            raise
        self._ticker = asyncio.create_task(self._tick_loop(), name="sim-clock")
        log.info(
            "simulating %s: %d modbus endpoints, %d mqtt devices on %s, speed %g, seed %d",
            self.site.site.id,
            len(self._modbus.endpoints),
            len(self._mqtt.agents),
            self.mqtt_url,
            self.speed,
            self.seed,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the clock and every face; MQTT devices announce they are gone."""
        await self._stop()

    async def _stop(self) -> None:
        if self._ticker is not None:
            ticker, self._ticker = self._ticker, None
            # The flag ends the clock even if the cancellation is lost (Python 3.11 can swallow one
            # that lands as the nudge fires, gh-86296); asyncio.wait, unlike awaiting the task under
            # suppress(CancelledError), never hides a cancellation of whoever is stopping us.
            self._stopping = True
            self._nudge.set()
            ticker.cancel()
            await asyncio.wait([ticker])
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await asyncio.wait([self._http_task])
            if not self._http_task.cancelled() and (exc := self._http_task.exception()) is not None:
                log.warning("control API stopped with %r", exc)
            self._http = self._http_task = None
        await self._mqtt.stop()
        await self._modbus.stop()

    async def _start_http(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            sock.close()
            raise OSError(f"control API cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
        self.control_port = sock.getsockname()[1]
        config = uvicorn.Config(create_app(self), log_level="warning", lifespan="off", access_log=False)
        self._http = _Server(config)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]), name="sim-control-api")
        while not self._http.started:
            if self._http_task.done():
                self._http_task.result()
                raise OSError("control API stopped while starting")
            await asyncio.sleep(0.02)

    @property
    def control_url(self) -> str | None:
        """Base URL of the control API, if it runs."""
        return None if self._http is None else f"http://127.0.0.1:{self.control_port}"

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        owed_s = 0.0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self._nudge.wait()
            if self._stopping:
                return
            self._nudge.clear()
            now = loop.time()
            owed_s += min(now - last, MAX_LAG_S) * self.speed
            last = now
            # whole quanta only, so the world sees the same steps whatever the timer jitter
            quanta = int(owed_s // QUANTUM_S)
            try:
                if quanta:
                    self.world.step(quanta * QUANTUM_S)
                    owed_s -= quanta * QUANTUM_S
                await self._modbus.sync()
                await self._mqtt.tick()
            except Exception:
                # a demo or a commissioning session should outlive one bad tick; the log says what broke
                log.exception("simulation tick failed")

    # ---- control (the same operations as the HTTP API) ---------------------------------------------

    def state(self) -> dict[str, Any]:
        """The whole simulated world (GET /sim/state)."""
        return {**self.world.state(), "speed": self.speed}

    def fault(self, name: str, target: str, **params: float) -> None:
        """Inject a fault (POST /sim/faults)."""
        self.world.fault(name, target, **params)
        self._nudge.set()

    def clear_faults(self) -> None:
        """Clear every fault and restore every source (DELETE /sim/faults)."""
        self.world.clear_faults()
        self._nudge.set()

    def set_room(self, room_id: str, **fields: Any) -> None:
        """Hold room fields (POST /sim/rooms/{room}); raises pydantic.ValidationError for bad fields."""
        override = RoomOverride.model_validate(fields)
        self.world.set_room(
            room_id,
            occupied=override.occupied,
            lights=override.lights,
            temperature=override.temperature,
            ac_mode=override.ac.mode if override.ac else None,
            ac_setpoint=override.ac.setpoint if override.ac else None,
            door_open=override.door_open,
            plugs=override.plugs,
            illuminance=override.illuminance,
        )
        self._nudge.set()

    def release_room(self, room_id: str) -> None:
        """Hand a room back to its model (DELETE /sim/rooms/{room})."""
        self.world.release_room(room_id)
        self._nudge.set()


async def run(
    site: Site,
    *,
    port: int = 8100,
    speed: float = 1.0,
    seed: int = 0,
    mqtt_url: str | None = None,
    start: datetime | None = None,
    generator_start_s: float | None = None,
) -> None:
    """Run the site's simulators and their control API until cancelled."""
    async with Simulation(
        site,
        control_port=port,
        speed=speed,
        seed=seed,
        mqtt_url=mqtt_url,
        start=start,
        generator_start_s=generator_start_s,
    ) as sim:
        log.info("control API on %s/sim/state", sim.control_url)
        await asyncio.Event().wait()
