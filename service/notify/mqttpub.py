"""A small, reconnecting MQTT publisher for the service's own messages (alarm notifications)."""

from __future__ import annotations

import asyncio
import logging

import aiomqtt

from drivers.mqtt import parse_mqtt_url
from service.tasks import stop_task

log = logging.getLogger(__name__)


class MqttPublisher:
    """Publishes through one persistent connection; `publish` waits for the broker while it reconnects."""

    def __init__(self, url: str, *, client_id: str, connect_timeout_s: float = 30.0) -> None:
        self._broker = parse_mqtt_url(url)
        self._client_id = client_id
        self._connect_timeout_s = connect_timeout_s
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect in the background."""
        self._task = asyncio.create_task(self._run(), name="mqtt-publisher")

    async def stop(self) -> None:
        """Disconnect."""
        await stop_task(self._task)
        self._task = None

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with aiomqtt.Client(
                    self._broker.host,
                    self._broker.port,
                    username=self._broker.username,
                    password=self._broker.password,
                    identifier=self._client_id,
                    tls_context=self._broker.tls,
                ) as client:
                    self._client = client
                    self._connected.set()
                    backoff = 0.5
                    # Nothing is subscribed: the iterator only ends by raising when the link drops.
                    async for _ in client.messages:
                        pass
            except aiomqtt.MqttError as exc:
                log.warning("notification publisher: MQTT %s", exc)
            finally:
                self._client = None
                self._connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish once connected; raises if no connection comes within the timeout (the notifier retries)."""
        await asyncio.wait_for(self._connected.wait(), self._connect_timeout_s)
        client = self._client
        if client is None:
            raise ConnectionError("MQTT publisher not connected")
        await client.publish(topic, payload, qos=qos, retain=retain)
