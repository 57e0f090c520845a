"""Alarm notifications and notices: webhooks (json, dingtalk, wecom, slack), MQTT, e-mail.

Each channel has its own queue and worker, so a slow or dead channel delays nobody else. A send
is retried with exponential backoff. Webhooks and e-mail are rate limited: beyond
`max_per_window` messages per `window_s` on a channel, what queues up goes out as one digest
when the window allows. MQTT carries alarm state, not messages: every transition is published,
retained, on ``<mqtt_topic>/<alarm id>`` (QoS 1), cleared states included.

A notice is a message for people that is not an alarm (no lifecycle, nothing to acknowledge),
e.g. a sweep's warning that occupied rooms will be switched off at the next sweep. It goes
through the same channels, queues and rate limits as alarm notifications; its JSON body has
`"kind": "notice"`, and on MQTT it is published once, not retained, on
``<mqtt_topic>/notices/<notice id>`` (one level deeper, so ``<mqtt_topic>/+`` sees alarms only).

With an outbox (the state store), every message is written there, one row per channel, before it
is queued, and its row goes once the channel has sent it (or given up on it). A process killed
with messages queued sends them when it, or the core that takes its site over, starts again
(`resume_pending`): at least once — a kill between a send and its row's removal sends it again.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from email.message import EmailMessage
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol
from urllib.parse import unquote, urlsplit

import httpx
import orjson

from service.alarms.record import Alarm
from service.clock import Clock
from service.config.credentials import redact_logs, url_host
from service.config.site import EmailChannel, Notifications, Webhook
from service.store.db import TransitionLike
from service.tasks import stop_task

log = logging.getLogger(__name__)

_DIGEST_LIST_MAX: Final = 50  # alarms listed by name in one digest; the rest are counted
_PENDING_MAX: Final = 10_000  # messages held per channel while it is rate limited or down
# One mark per rules.Severity, most urgent first (a test keeps the two in step).
SEVERITY_MARK: Final[Mapping[str, str]] = MappingProxyType(
    {"critical": "🔴", "high": "🟠", "warning": "🟡", "low": "🔵"}
)


class MqttPublisher(Protocol):
    """What the notifier needs of an MQTT client (an aiomqtt.Client fits)."""

    async def publish(self, topic: str, payload: bytes, qos: int = ..., retain: bool = ...) -> None:
        """Publish one message."""
        ...


class NoticeOutbox(Protocol):
    """Where queued messages wait, durably, until their channel is done with them (service.store)."""

    async def add_notices(self, rows: Sequence[tuple[str, dict[str, Any]]], *, at: datetime) -> list[int]:
        """Keep (channel, message) rows; their ids, in order."""
        ...

    async def pending_notices(self) -> list[tuple[int, str, dict[str, Any]]]:
        """(id, channel, message) of every row kept, oldest first."""
        ...

    async def notices_done(self, ids: Collection[int]) -> None:
        """Forget rows: their messages were sent or given up on."""
        ...


class PermanentError(Exception):
    """A send that retrying cannot fix (e.g. HTTP 4xx)."""


@dataclass(frozen=True, slots=True)
class Notice:
    """One alarm transition (kind `alarm`) or one notice (kind `notice`), rendered once for every channel."""

    id: str  # the alarm's id, or the notice's own
    body: dict[str, Any]
    title: str
    lines: tuple[str, ...]
    kind: Literal["alarm", "notice"] = "alarm"

    @property
    def markdown(self) -> str:
        """Title and details as Markdown."""
        return f"### {self.title}\n" + "\n".join(f"- {line}" for line in self.lines)

    def to_json(self) -> dict[str, Any]:
        """As an outbox row keeps it."""
        return {"id": self.id, "body": self.body, "title": self.title, "lines": list(self.lines), "kind": self.kind}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Notice:
        """Back from an outbox row."""
        kind: Literal["alarm", "notice"] = "notice" if data.get("kind") == "notice" else "alarm"
        lines = tuple(str(line) for line in data.get("lines", ()))
        return cls(id=str(data["id"]), body=dict(data["body"]), title=str(data["title"]), lines=lines, kind=kind)

    @property
    def plain(self) -> str:
        """Title and details as plain text."""
        return self.title + "\n" + "\n".join(self.lines)


@dataclass(frozen=True, slots=True)
class Digest:
    """Several notices sent as one message because the channel hit its rate limit."""

    notices: tuple[Notice, ...]
    site_name: str

    @property
    def title(self) -> str:
        """One-line summary."""
        what = "alarm notifications" if all(n.kind == "alarm" for n in self.notices) else "notifications"
        return f"[{self.site_name}] {len(self.notices)} {what}"

    def _summary(self) -> list[str]:
        shown = [n.title for n in self.notices[:_DIGEST_LIST_MAX]]
        more = len(self.notices) - len(shown)
        return shown + ([f"… and {more} more"] if more > 0 else [])

    @property
    def markdown(self) -> str:
        """The digest as Markdown."""
        return f"### {self.title}\n" + "\n".join(f"- {line}" for line in self._summary())

    @property
    def plain(self) -> str:
        """The digest as plain text."""
        return self.title + "\n" + "\n".join(self._summary())

    @property
    def body(self) -> dict[str, Any]:
        """The digest as JSON."""
        return {
            "digest": True,
            "count": len(self.notices),
            "alarms": [n.body for n in self.notices if n.kind == "alarm"],
            "notices": [n.body for n in self.notices if n.kind == "notice"],
        }


Message = Notice | Digest


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat()


def render_notice(
    alarm: Alarm, transition: TransitionLike | None, *, site_id: str, site_name: str, tz: tzinfo
) -> Notice:
    """The channel-independent content of one alarm notification."""
    body: dict[str, Any] = {
        "site": site_id,
        "kind": "alarm",
        "id": alarm.id,
        "type": str(alarm.type),
        "severity": str(alarm.severity),
        "subject": alarm.subject,
        "state": str(alarm.state),
        "raised_at": _iso(alarm.raised_at),
        "cleared_at": _iso(alarm.cleared_at),
        "acked_by": alarm.acked_by,
        "message": alarm.message,
        "value": alarm.value,
        "updated_at": _iso(alarm.updated_at),
        "shelved_until": _iso(alarm.shelved_until),
    }
    if transition is not None:
        body["transition"] = {
            "from": None if transition.from_state is None else str(transition.from_state),
            "to": str(transition.to_state),
            "at": _iso(transition.at),
            "who": transition.who,
            "note": transition.note,
        }
    severity = str(alarm.severity)
    mark = SEVERITY_MARK.get(severity, "⚪")
    title = f"{mark} [{site_name}] {alarm.type} {alarm.subject}: {alarm.state}"
    at = (transition.at if transition is not None else alarm.updated_at).astimezone(tz)
    lines = [f"severity: {severity}", f"state: {alarm.state}", f"at: {at:%Y-%m-%d %H:%M:%S %Z}"]
    if alarm.message:
        lines.append(f"message: {alarm.message}")
    if alarm.value is not None:
        lines.append(f"value: {alarm.value}")
    if alarm.acked_by:
        lines.append(f"acknowledged by: {alarm.acked_by}")
    if transition is not None and transition.note:
        lines.append(f"note: {transition.note}")
    return Notice(alarm.id, body, title, tuple(lines))


def render_occupied_rooms_notice(
    *,
    site_id: str,
    site_name: str,
    tz: tzinfo,
    sweep: str,
    job: str,
    at: datetime,
    rooms: Sequence[tuple[str, str]],
    next_sweep: datetime | None,
) -> Notice:
    """A sweep's warning under `notify_then_off`: these rooms (id, name) were still occupied and skipped;
    the next sweep (if any before the warning lapses) switches them off even if still occupied."""
    local = at.astimezone(tz)
    named = ", ".join(f"{room_id} ({name})" if name and name != room_id else room_id for room_id, name in rooms)
    if next_sweep is not None:
        then = (
            f"the next sweep at {next_sweep.astimezone(tz):%Y-%m-%d %H:%M %Z} switches them off even if still occupied"
        )
    else:
        then = "no later sweep switches them off before this warning lapses"
    message = f"still occupied, skipped: lights, AC and office equipment left on; {then}"
    body: dict[str, Any] = {
        "site": site_id,
        "kind": "notice",
        "id": f"sweep:{sweep}:{at.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}",
        "notice": "rooms_still_occupied",
        "sweep": sweep,
        "job": job,
        "at": _iso(at),
        "rooms": [{"id": room_id, "name": name} for room_id, name in rooms],
        "next_sweep": _iso(next_sweep),
        "message": message,
    }
    title = f"🔔 [{site_name}] after-hours sweep: {len(rooms)} room(s) still occupied"
    lines = (f"rooms: {named}", message, f"at: {local:%Y-%m-%d %H:%M:%S %Z}", f"sweep: {sweep} ({job})")
    return Notice(body["id"], body, title, lines, kind="notice")


def webhook_body(fmt: str, message: Message) -> dict[str, Any]:
    """The JSON body a webhook of format json|dingtalk|wecom|slack expects."""
    if fmt == "json":
        return message.body
    if fmt == "dingtalk":
        return {"msgtype": "markdown", "markdown": {"title": message.title, "text": message.markdown}}
    if fmt == "wecom":
        return {"msgtype": "markdown", "markdown": {"content": message.markdown}}
    if fmt == "slack":
        details = "\n".join(message.plain.splitlines()[1:])
        return {
            "text": message.title,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": details[:3000] or " "}},
            ],
        }
    raise ValueError(f"unknown webhook format '{fmt}'")


class _RateLimit:
    """At most `limit` sends in any `window_s` (monotonic time)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._sent: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._sent and now - self._sent[0] >= self.window_s:
            self._sent.popleft()

    def wait_s(self) -> float:
        """Seconds until one more send is allowed (0 when it is now)."""
        now = time.monotonic()
        self._expire(now)
        return 0.0 if len(self._sent) < self.limit else self._sent[0] + self.window_s - now

    def slots_left(self) -> int:
        """Sends still allowed in the current window."""
        self._expire(time.monotonic())
        return self.limit - len(self._sent)

    def record(self) -> None:
        self._sent.append(time.monotonic())


class _Channel:
    """A queue and a worker that sends with retries and, when limited, digests."""

    def __init__(
        self,
        name: str,
        send: Callable[[Message], Awaitable[None]],
        *,
        site_name: str,
        limit: _RateLimit | None,
        max_attempts: int,
        backoff_s: float,
        done: Callable[[list[int]], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self._send = send
        self._site_name = site_name
        self._limit = limit
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._done = done
        # Each message with its outbox row (None: not kept, e.g. while the store was unreachable).
        self._queue: asyncio.Queue[tuple[Notice, int | None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0
        self.digests = 0
        self.discarded = 0

    def put(self, notice: Notice, row: int | None = None) -> None:
        self._queue.put_nowait((notice, row))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"notify-{self.name}")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    def _drain(self, pending: list[tuple[Notice, int | None]]) -> list[int]:
        """Take what is queued; past _PENDING_MAX the oldest go: their outbox rows, to forget."""
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        if len(pending) <= _PENDING_MAX:
            return []
        excess = len(pending) - _PENDING_MAX
        dropped = [row for _, row in pending[:excess] if row is not None]
        del pending[:excess]
        self.discarded += excess
        log.error("notify %s: discarded %d old notices (channel backlog)", self.name, excess)
        return dropped

    async def _run(self) -> None:
        pending: list[tuple[Notice, int | None]] = []
        while True:
            if not pending:
                pending.append(await self._queue.get())
            await self._forget(self._drain(pending))
            wait = self._limit.wait_s() if self._limit is not None else 0.0
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            message: Message
            if self._limit is None or len(pending) == 1 or self._limit.slots_left() > 1:
                # Send one by one while the window has room; its last send summarises the rest.
                notice, row = pending.pop(0)
                message, rows = notice, [] if row is None else [row]
            else:
                message = Digest(tuple(n for n, _ in pending), self._site_name)
                rows = [row for _, row in pending if row is not None]
                pending.clear()
            if self._limit is not None:
                self._limit.record()
            await self._deliver(message)
            await self._forget(rows)

    async def _forget(self, rows: list[int]) -> None:
        if not rows or self._done is None:
            return
        try:
            await self._done(rows)
        except Exception as exc:  # the rows stay: their messages go again after a restart (at least once)
            log.warning("notify %s: could not clear %d sent messages from the outbox: %s", self.name, len(rows), exc)

    async def _deliver(self, message: Message) -> None:
        for attempt in range(1, self._max_attempts + 1):
            try:
                await self._send(message)
            except PermanentError as exc:
                log.error("notify %s: refused, not retried: %s", self.name, exc)
                break
            except Exception as exc:
                if attempt == self._max_attempts:
                    log.error("notify %s: giving up after %d attempts: %s", self.name, attempt, exc)
                    break
                delay = min(self._backoff_s * 2 ** (attempt - 1), 300.0)
                log.warning("notify %s: attempt %d failed (%s); retry in %.1fs", self.name, attempt, exc, delay)
                await asyncio.sleep(delay)
            else:
                self.sent += 1
                if isinstance(message, Digest):
                    self.digests += 1
                return
        self.failed += 1


class Notifier:
    """Fans alarm transitions out to the site's notification channels."""

    def __init__(
        self,
        notifications: Notifications,
        *,
        site_id: str,
        site_name: str,
        clock: Clock,
        mqtt: MqttPublisher | None = None,
        timezone: tzinfo = UTC,
        max_per_window: int = 10,
        window_s: float = 60.0,
        max_attempts: int = 5,
        backoff_s: float = 2.0,
        timeout_s: float = 10.0,
        outbox: NoticeOutbox | None = None,
    ) -> None:
        self._site_id = site_id
        self._outbox = outbox
        self._site_name = site_name
        self._clock = clock
        self._tz = timezone
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(timeout=timeout_s)
        redact_logs("httpx")  # it logs each request's URL: a webhook's token or password with it
        self.channels: list[_Channel] = []

        def channel(name: str, send: Callable[[Message], Awaitable[None]], limited: bool) -> None:
            limit = _RateLimit(max_per_window, window_s) if limited else None
            self.channels.append(
                _Channel(
                    name,
                    send,
                    site_name=site_name,
                    limit=limit,
                    max_attempts=max_attempts,
                    backoff_s=backoff_s,
                    done=None if outbox is None else outbox.notices_done,
                )
            )

        for hook in notifications.webhooks:
            # The name goes into logs: the host only, never user:pass, a token in the query or a Slack path.
            channel(f"webhook:{url_host(hook.url)}", self._webhook_sender(hook), True)
        if notifications.mqtt_topic is not None:
            if mqtt is None:
                raise ValueError("notifications.mqtt_topic is set but no MQTT publisher was given")
            channel(f"mqtt:{notifications.mqtt_topic}", self._mqtt_sender(mqtt, notifications.mqtt_topic), False)
        if notifications.email is not None:
            channel("email", self._email_sender(notifications.email), True)

    async def start(self) -> None:
        """Start one worker per channel."""
        for ch in self.channels:
            ch.start()

    async def stop(self) -> None:
        """Stop the workers and close the HTTP client; what is still queued stays in the outbox for the next start."""
        for ch in self.channels:
            await ch.stop()
        await self._http.aclose()

    async def notify(self, alarm: Alarm, transition: TransitionLike | None = None) -> None:
        """Queue one alarm transition for every channel (kept in the outbox first); returns once queued."""
        notice = render_notice(alarm, transition, site_id=self._site_id, site_name=self._site_name, tz=self._tz)
        await self._enqueue(notice)

    async def _enqueue(self, notice: Notice) -> None:
        rows: Sequence[int | None] = [None] * len(self.channels)
        if self._outbox is not None and self.channels:
            try:
                kept = [(ch.name, notice.to_json()) for ch in self.channels]
                rows = await self._outbox.add_notices(kept, at=self._clock.now())
            except Exception as exc:  # sent all the same, from memory: lost only if killed before it goes
                log.warning("notify: outbox unreachable (%s); %s queued in memory only", exc, notice.id)
        for ch, row in zip(self.channels, rows, strict=True):
            ch.put(notice, row)

    async def resume_pending(self) -> int:
        """Queue what the outbox still holds from before a restart or a takeover, oldest first; call it
        when this process starts owning the site (before new alarms come). How many were queued."""
        if self._outbox is None:
            return 0
        by_name = {ch.name: ch for ch in self.channels}
        gone: list[int] = []
        queued = 0
        for row, name, data in await self._outbox.pending_notices():
            ch = by_name.get(name)
            try:
                notice = Notice.from_json(data)
            except (KeyError, TypeError, ValueError):
                log.error("notify: outbox row %d is not a message; dropped", row)
                ch = None
            if ch is None:
                gone.append(row)
                continue
            ch.put(notice, row)
            queued += 1
        if gone:
            log.warning("notify: %d kept messages for channels no longer configured dropped", len(gone))
            await self._outbox.notices_done(gone)
        if queued:
            log.warning("notify: %d messages kept from before the start queued again", queued)
        return queued

    async def rooms_still_occupied(
        self, *, sweep: str, job: str, at: datetime, rooms: Sequence[tuple[str, str]], next_sweep: datetime | None
    ) -> None:
        """Queue a sweep's warning about occupied rooms (id, name) for every channel; returns at once."""
        notice = render_occupied_rooms_notice(
            site_id=self._site_id,
            site_name=self._site_name,
            tz=self._tz,
            sweep=sweep,
            job=job,
            at=at,
            rooms=rooms,
            next_sweep=next_sweep,
        )
        await self._enqueue(notice)

    def _webhook_sender(self, hook: Webhook) -> Callable[[Message], Awaitable[None]]:
        async def send(message: Message) -> None:
            body = orjson.dumps(webhook_body(hook.format, message))
            response = await self._http.post(hook.url, content=body, headers={"Content-Type": "application/json"})
            if response.status_code == 429 or response.status_code >= 500:
                raise RuntimeError(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                raise PermanentError(f"HTTP {response.status_code}: {response.text[:200]}")

        return send

    def _mqtt_sender(self, mqtt: MqttPublisher, topic: str) -> Callable[[Message], Awaitable[None]]:
        async def send(message: Message) -> None:
            # No rate limit on this channel, so every message is a Notice.
            assert isinstance(message, Notice)
            payload = orjson.dumps(message.body)
            level = alarm_topic_level(message.id)
            if message.kind == "notice":
                await mqtt.publish(f"{topic}/notices/{level}", payload, qos=1, retain=False)
            else:
                await mqtt.publish(f"{topic}/{level}", payload, qos=1, retain=True)

        return send

    def _email_sender(self, channel: EmailChannel) -> Callable[[Message], Awaitable[None]]:
        async def send(message: Message) -> None:
            mail = EmailMessage()
            mail["From"] = channel.sender
            mail["To"] = ", ".join(channel.to)
            mail["Subject"] = message.title
            mail["Date"] = self._clock.now()
            mail.set_content(message.plain)
            await asyncio.to_thread(send_mail, channel.url, mail, self._timeout_s)

        return send


def alarm_topic_level(alarm_id: str) -> str:
    """An alarm id as one MQTT topic level (no '/', '+', '#')."""
    return alarm_id.replace("/", "_").replace("+", "_").replace("#", "_")


def send_mail(url: str, mail: EmailMessage, timeout_s: float) -> None:
    """Send one message over smtp://[user:pass@]host[:port] (STARTTLS when offered) or smtps://."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if parts.scheme == "smtps":
        smtp = smtplib.SMTP_SSL(host, parts.port or 465, timeout=timeout_s, context=context)
    else:
        smtp = smtplib.SMTP(host, parts.port or 25, timeout=timeout_s)
    with smtp:
        if parts.scheme == "smtp" and parts.username:
            smtp.ehlo()
            # Never send a password in the clear.
            if not smtp.has_extn("starttls"):
                raise PermanentError(f"{host} offers no STARTTLS; refusing to send credentials")
            smtp.starttls(context=context)
        if parts.username:
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        smtp.send_message(mail)
