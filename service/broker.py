"""An embedded MQTT broker (amqtt) for the demo: 127.0.0.1:1883, or a free loopback port when taken."""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Any

from amqtt.broker import Broker


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def pick_port(preferred: int = 1883, host: str = "127.0.0.1") -> int:
    """The preferred port if free, else any free loopback port."""
    if port_free(preferred, host):
        return preferred
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """amqtt broker bound to loopback only, anonymous (demo use; production uses Mosquitto)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = Broker(config)

    @property
    def url(self) -> str:
        """mqtt:// URL of the broker."""
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        """Start listening."""
        # amqtt logs every connection at INFO; the demo's console is for the facility manager.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        await self._broker.start()

    async def stop(self) -> None:
        """Shut down."""
        with contextlib.suppress(Exception):
            await self._broker.shutdown()
