"""A real SMTP server on loopback that keeps what it receives."""

from __future__ import annotations

import email
import email.message
import time
from typing import Any

from aiosmtpd.controller import Controller

from tests.servers import free_port


class _Handler:
    def __init__(self, box: list[email.message.Message]) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.box.append(email.message_from_bytes(envelope.content))
        return "250 OK"


class SmtpSink:
    """aiosmtpd controller in its own thread; `.messages` fills as mail arrives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[email.message.Message] = []
        self._ctl = Controller(_Handler(self.messages), hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._ctl.start()

    def stop(self) -> None:
        self._ctl.stop()

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[email.message.Message]:
        """Wait until `count` messages arrived."""
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)


def body_text(mail: email.message.Message) -> str:
    """The decoded body of a single-part mail (the notifier sends one text/plain part)."""
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes), f"expected a single-part mail, got {type(payload).__name__}"
    return payload.decode()
