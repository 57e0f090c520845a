"""The alarm engine: findings -> alarm lifecycles after ISA-18.2 / IEC 62682. Pure; time comes in.

One lifecycle per (type, subject). A finding that stays active for the type's on-delay raises
the alarm (`active_unacked`); acknowledging it gives `active_acked`; once the finding has been
inactive for the off-delay it returns to normal: `cleared` if it was acknowledged, else
`cleared_unacked` until someone acknowledges it. A cleared_unacked alarm that comes back is the
same lifecycle, active_unacked again; a new lifecycle (new id) starts only after `cleared`.
While an alarm is active, a finding within `deadband` of the limit it was compared with counts as
still active.

Shelving hides an open alarm until a time. The engine keeps following its condition underneath
(`active`, `cleared_at`) and its acknowledgement (`acked_by`, `acked_at`); on expiry (or unshelve)
the alarm returns to the state those say (ISA-18.2): active_acked or active_unacked while the
condition holds, cleared or cleared_unacked once it has returned to normal. A condition that
returns to normal and comes back while shelved is a new occurrence: nobody has acknowledged it.

With the default configuration every type has an off-delay of at least 60 s, so a chattering input
raises at most one alarm a minute: an alarm can only be raised again after it has cleared, and it
clears only after a full off-delay without an active finding.

Value updates of an active alarm change `value`, `message` and `updated_at` without a transition
(`take_updated` hands them to the caller, which shows and stores them); every state change (and
every ack, shelve and unshelve) is a Transition for the journal. A change of severity is one too:
an escalation (a worse severity) of an acknowledged alarm makes it unacknowledged again (ISA-18.2
re-alarm) and is notified; a lowered severity is journaled and shown, not notified.

A finding with `page=False` (another active alarm already pages for the same event, e.g.
redundancy_lost while grid_lost is active) makes the same transitions, marked `page=False`: the
journal and the dashboard show them, the notifiers leave them out.

Each type's configuration (DEFAULT_CONFIG, from the alarm-type table rules.ALARM_TYPES, overridden
per type by the site file's `alarms:` block in `site_config`) may fix its severity (`severity`) or
switch it off (`enabled: false`: its findings count as normal, so an open alarm of that type clears
after its off-delay and none is raised).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

from service.alarms.record import Alarm, AlarmState, Severity
from service.alarms.rules import ALARM_TYPES, Finding
from service.config.site import Site
from service.live.jsonable import json_fields

SYSTEM: Final = "system"  # `who` of transitions the engine makes by itself


@dataclass(frozen=True, slots=True)
class AlarmTypeConfig:
    """How one alarm type is debounced: delays in seconds, deadband in the unit of the findings' value."""

    on_delay_s: float = 0.0
    off_delay_s: float = 60.0
    deadband: float = 0.0
    severity: Severity | None = None  # None: the type's own (rules.ALARM_TYPES)
    enabled: bool = True


# The shipped defaults: each type's delays and deadband from the alarm-type table.
DEFAULT_CONFIG: Final[Mapping[str, AlarmTypeConfig]] = MappingProxyType(
    {s.type: AlarmTypeConfig(s.on_delay_s, s.off_delay_s, s.deadband) for s in ALARM_TYPES}
)
_FALLBACK = AlarmTypeConfig()


def site_config(site: Site, base: Mapping[str, AlarmTypeConfig] = DEFAULT_CONFIG) -> dict[str, AlarmTypeConfig]:
    """`base` (the shipped defaults) with the site file's `alarms:` block applied, key by key."""
    out = dict(base)
    for kind, given in site.alarms.items():
        changes: dict[str, object] = {k: v for k, v in given.model_dump().items() if v is not None}
        if "severity" in changes:
            changes["severity"] = Severity(str(changes["severity"]))
        out[kind] = replace(out.get(kind, _FALLBACK), **changes)  # type: ignore[arg-type]
    return out


def effective_table(site: Site, base: Mapping[str, AlarmTypeConfig] = DEFAULT_CONFIG) -> list[dict[str, object]]:
    """Every alarm type with the delays, deadband, severity and state the engine applies on this site.

    `from` says whether the row is the shipped default or (partly) set in the site file's `alarms:`.
    """
    config = site_config(site, base)
    rows: list[dict[str, object]] = []
    for spec in ALARM_TYPES:
        kind = spec.type
        conf = config.get(kind, _FALLBACK)
        severity = conf.severity or spec.severity
        note = "" if conf.severity is not None else spec.severity_note
        rows.append(
            {
                "type": kind.value,
                "on_delay_s": conf.on_delay_s,
                "off_delay_s": conf.off_delay_s,
                "deadband": conf.deadband,
                "severity": severity.value,
                "enabled": conf.enabled,
                "from": "site file" if kind.value in site.alarms else "default",
                "note": note,
            }
        )
    return rows


FLOOD_COUNT: Final = 10
FLOOD_WINDOW_S: Final = 600.0
FLOOD_TRACKED: Final = 1000  # raise times kept: enough to count a flood, bounded whatever the rate
MAX_SHELVE_S: Final = 24 * 3600.0  # shelving is time-limited (ISA-18.2); longer is out of service
HISTORY: Final = 1000  # closed alarms kept in memory for all(); the store keeps every one


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """One journal entry: `alarm` as it is after the change."""

    alarm: Alarm
    from_state: AlarmState | None  # None when the lifecycle starts
    to_state: AlarmState
    at: datetime
    who: str
    value: float | str | None
    note: str = ""
    page: bool = True  # False: journal and show it, do not notify (another alarm pages for the event)


# Most urgent first: a lower rank is a worse severity.
SEVERITY_RANK: Final[Mapping[Severity, int]] = MappingProxyType({s: i for i, s in enumerate(Severity)})


@dataclass(frozen=True, slots=True, kw_only=True)
class Flood:
    """The alarm flood indicator (ISA-18.2): more than `threshold` alarms raised within `window_s`."""

    active: bool
    raised: int  # alarms raised in the window up to `at`
    threshold: int
    window_s: float
    since: datetime | None  # when the flood began; None while there is none
    at: datetime

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (GET /api/alarms/flood, the `alarm_flood` event)."""
        return json_fields(self, "active", "raised", "threshold", "window_s", "since", "at")


class AlarmStateError(ValueError):
    """An operation the alarm's state does not allow (e.g. shelving a cleared alarm)."""


class AlarmEngine:
    """Turns findings into alarm lifecycles; holds open alarms and the recently closed ones."""

    def __init__(
        self,
        config: Mapping[str, AlarmTypeConfig] = DEFAULT_CONFIG,
        *,
        flood_count: int = FLOOD_COUNT,
        flood_window_s: float = FLOOD_WINDOW_S,
        max_shelve_s: float = MAX_SHELVE_S,
        history: int = HISTORY,
    ) -> None:
        self._config = config
        self._flood_count = flood_count
        self._flood_window_s = flood_window_s
        self._max_shelve_s = max_shelve_s
        self._history = history
        self._open: dict[tuple[str, str], Alarm] = {}
        self._closed: OrderedDict[str, Alarm] = OrderedDict()
        self._pending_on: dict[tuple[str, str], datetime] = {}
        self._pending_off: dict[tuple[str, str], datetime] = {}
        self._updated: dict[str, Alarm] = {}  # id -> alarm whose value or message changed, not yet taken
        # The latest raise times: flood_count + 1 of them decide whether there is a flood, the rest
        # say how large it is.
        self._raises: deque[datetime] = deque(maxlen=max(flood_count + 1, FLOOD_TRACKED))

    # -- reading ----------------------------------------------------------------------------

    def get(self, alarm_id: str) -> Alarm | None:
        """An open or recently closed alarm by id."""
        return self._by_id(alarm_id)

    def active(self) -> list[Alarm]:
        """Open lifecycles (every state but `cleared`), oldest first."""
        return sorted(self._open.values(), key=lambda a: a.raised_at)

    def all(self) -> list[Alarm]:
        """Open and recently closed alarms, oldest first."""
        return sorted([*self._open.values(), *self._closed.values()], key=lambda a: a.raised_at)

    @property
    def flood_count(self) -> int:
        """More alarms than this raised within flood_window_s is a flood."""
        return self._flood_count

    @property
    def flood_window_s(self) -> float:
        """The window of the flood indicator, in seconds."""
        return self._flood_window_s

    def raised_in_window(self, now: datetime) -> int:
        """Alarms raised in the flood window up to `now` (new lifecycles and returns, not shelved ones)."""
        return sum(1 for t in self._raises if 0 <= (now - t).total_seconds() < self._flood_window_s)

    def flood(self, now: datetime) -> bool:
        """More than flood_count alarms raised in the flood window up to `now`."""
        return self.raised_in_window(now) > self._flood_count

    def flood_status(self, now: datetime, previous: Flood | None = None) -> Flood:
        """The flood indicator at `now`; a flood still on keeps the `since` of `previous`."""
        raised = self.raised_in_window(now)
        active = raised > self._flood_count
        since = None
        if active:
            since = previous.since if previous is not None and previous.since is not None else now
        return Flood(
            active=active,
            raised=raised,
            threshold=self._flood_count,
            window_s=self._flood_window_s,
            since=since,
            at=now,
        )

    # -- findings ---------------------------------------------------------------------------

    def update(self, findings: Iterable[Finding], now: datetime) -> list[Transition]:
        """Apply findings made at `now` (and expire shelves); return the transitions to journal."""
        out = self._expire(now)
        for f in findings:
            out.extend(self._apply(f, now))
        return out

    def take_updated(self) -> list[Alarm]:
        """Open alarms whose value or message changed (without a transition) since the last call."""
        updated, self._updated = self._updated, {}
        return [a for a in updated.values() if self._open.get(a.key) is a]

    def config(self, kind: str) -> AlarmTypeConfig:
        """The configuration the engine applies to an alarm type."""
        return self._config.get(kind, _FALLBACK)

    def _apply(self, f: Finding, now: datetime) -> list[Transition]:
        key = (f.type, f.subject)
        conf = self._config.get(f.type, _FALLBACK)
        if not conf.enabled:
            f = replace(f, active=False, limit=None)
        elif conf.severity is not None:
            f = replace(f, severity=conf.severity)
        alarm = self._open.get(key)
        was_active = alarm is not None and alarm.active
        if f.active or (was_active and _within_deadband(f, conf.deadband)):
            self._pending_off.pop(key, None)
            if alarm is not None and was_active:
                return self._refresh(alarm, f, now)
            since = self._pending_on.setdefault(key, now)
            if (now - since).total_seconds() < conf.on_delay_s:
                return []
            del self._pending_on[key]
            return [self._raise(alarm, f, now)]
        self._pending_on.pop(key, None)
        if alarm is None or not was_active:
            return []
        since = self._pending_off.setdefault(key, now)
        if (now - since).total_seconds() < conf.off_delay_s:
            return []
        del self._pending_off[key]
        return [self._clear(alarm, f, now)]

    def _refresh(self, alarm: Alarm, f: Finding, now: datetime) -> list[Transition]:
        if f.severity is not alarm.severity:
            return [self._reseverity(alarm, f, now)]
        if (alarm.value, alarm.message) != (f.value, f.message):
            changed = replace(alarm, value=f.value, message=f.message, updated_at=now)
            self._store(changed)
            self._updated[changed.id] = changed
        return []

    def _reseverity(self, alarm: Alarm, f: Finding, now: datetime) -> Transition:
        """The condition got worse (escalate; an acknowledged alarm is unacknowledged again) or better."""
        was = alarm.severity
        changed = replace(alarm, severity=f.severity, value=f.value, message=f.message, updated_at=now)
        if SEVERITY_RANK[f.severity] > SEVERITY_RANK[was]:
            note = f"severity lowered: {was.value} -> {f.severity.value}"
            return self._move(changed, alarm.state, now, SYSTEM, f.value, note, page=False)
        note = f"escalated: {was.value} -> {f.severity.value}"
        if alarm.acked:
            changed = replace(changed, acked_by=None, acked_at=None)
            if alarm.state is AlarmState.active_acked:
                changed = replace(changed, state=AlarmState.active_unacked)
                self._raises.append(now)
            note += "; re-alarmed (acknowledgement withdrawn)"
        return self._move(changed, alarm.state, now, SYSTEM, f.value, note, page=f.page)

    def _raise(self, alarm: Alarm | None, f: Finding, now: datetime) -> Transition:
        if alarm is None:
            new = Alarm(
                id=self._new_id(f.type, f.subject, now),
                type=f.type,
                severity=f.severity,
                subject=f.subject,
                state=AlarmState.active_unacked,
                active=True,
                raised_at=now,
                updated_at=now,
                message=f.message,
                value=f.value,
            )
            self._raises.append(now)
            return self._move(new, None, now, SYSTEM, f.value, _paged("raised", f), page=f.page)
        if alarm.state is AlarmState.shelved:
            # Back after returning to normal: an occurrence nobody has seen, so not acknowledged.
            changed = replace(
                alarm,
                active=True,
                cleared_at=None,
                acked_by=None,
                acked_at=None,
                value=f.value,
                message=f.message,
                updated_at=now,
            )
            note = _paged("active while shelved", f)
            return self._move(changed, alarm.state, now, SYSTEM, f.value, note, page=f.page)
        self._raises.append(now)
        changed = replace(
            alarm,
            state=AlarmState.active_unacked,
            active=True,
            cleared_at=None,
            severity=f.severity,
            value=f.value,
            message=f.message,
            updated_at=now,
        )
        return self._move(changed, alarm.state, now, SYSTEM, f.value, _paged("active again", f), page=f.page)

    def _clear(self, alarm: Alarm, f: Finding, now: datetime) -> Transition:
        to = {
            AlarmState.active_unacked: AlarmState.cleared_unacked,
            AlarmState.active_acked: AlarmState.cleared,
            AlarmState.shelved: AlarmState.shelved,
        }[alarm.state]
        note = "returned to normal while shelved" if to is AlarmState.shelved else "returned to normal"
        changed = replace(alarm, state=to, active=False, cleared_at=now, value=f.value, updated_at=now)
        return self._move(changed, alarm.state, now, SYSTEM, f.value, note)

    def _expire(self, now: datetime) -> list[Transition]:
        due = [a for a in self._open.values() if a.shelved_until is not None and a.shelved_until <= now]
        return [self._unshelve(a, SYSTEM, now, "shelve expired") for a in due]

    # -- operators --------------------------------------------------------------------------

    def ack(self, alarm_id: str, who: str, now: datetime) -> Transition | None:
        """Acknowledge; None if there is nothing to acknowledge (already acked, cleared or shelved)."""
        alarm = self._require(alarm_id, who)
        to = {
            AlarmState.active_unacked: AlarmState.active_acked,
            AlarmState.cleared_unacked: AlarmState.cleared,
        }.get(alarm.state)
        if to is None:
            return None
        changed = replace(alarm, state=to, acked_by=who, acked_at=now, updated_at=now)
        return self._move(changed, alarm.state, now, who, alarm.value, "acknowledged")

    def shelve(self, alarm_id: str, until: datetime, who: str, now: datetime) -> Transition:
        """Hide an open alarm until `until` (at most max_shelve_s ahead); shelving again moves the time."""
        alarm = self._require(alarm_id, who)
        if not alarm.open:
            raise AlarmStateError(f"alarm {alarm_id} is cleared; there is nothing to shelve")
        ahead = (until - now).total_seconds()
        if ahead <= 0:
            raise AlarmStateError("a shelf must end in the future")
        if ahead > self._max_shelve_s:
            raise AlarmStateError(f"a shelf may last at most {self._max_shelve_s / 3600:g} h")
        changed = replace(alarm, state=AlarmState.shelved, shelved_until=until, shelved_by=who, updated_at=now)
        return self._move(changed, alarm.state, now, who, alarm.value, f"shelved until {until.isoformat()}")

    def unshelve(self, alarm_id: str, who: str, now: datetime) -> Transition:
        """End a shelf early."""
        alarm = self._require(alarm_id, who)
        if alarm.state is not AlarmState.shelved:
            raise AlarmStateError(f"alarm {alarm_id} is not shelved")
        return self._unshelve(alarm, who, now, "unshelved")

    def _unshelve(self, alarm: Alarm, who: str, now: datetime, note: str) -> Transition:
        if alarm.active:
            to = AlarmState.active_acked if alarm.acked else AlarmState.active_unacked
        else:
            to = AlarmState.cleared if alarm.acked else AlarmState.cleared_unacked
        changed = replace(alarm, state=to, shelved_until=None, shelved_by=None, updated_at=now)
        return self._move(changed, alarm.state, now, who, alarm.value, note)

    # -- restart ----------------------------------------------------------------------------

    def restore(self, alarms: Iterable[Alarm]) -> list[Transition]:
        """Rebuild from stored alarms after a restart; idempotent.

        Should the store hold two open lifecycles for one (type, subject), the newer one is kept
        and the older is closed: those transitions are returned for the journal.
        """
        out = []
        for a in sorted(alarms, key=lambda a: a.raised_at):
            if self._by_id(a.id) is not None:
                continue
            if a.raised_at.tzinfo is None:
                raise ValueError(f"alarm {a.id}: raised_at must be timezone-aware")
            self._raises.append(a.raised_at)
            if not a.open:
                self._remember_closed(a)
                continue
            older = self._open.get(a.key)
            self._open[a.key] = a
            if older is not None:
                closed = replace(
                    older,
                    state=AlarmState.cleared,
                    active=False,
                    cleared_at=older.cleared_at or a.raised_at,
                    updated_at=a.raised_at,
                )
                self._remember_closed(closed)
                out.append(
                    Transition(
                        alarm=closed,
                        from_state=older.state,
                        to_state=AlarmState.cleared,
                        at=a.raised_at,
                        who=SYSTEM,
                        value=older.value,
                        note=f"superseded by {a.id} on restore",
                    )
                )
        return out

    # -- bookkeeping ------------------------------------------------------------------------

    def _move(
        self,
        alarm: Alarm,
        before: AlarmState | None,
        now: datetime,
        who: str,
        value: float | str | None,
        note: str,
        *,
        page: bool = True,
    ) -> Transition:
        self._store(alarm)
        self._updated.pop(alarm.id, None)
        return Transition(
            alarm=alarm, from_state=before, to_state=alarm.state, at=now, who=who, value=value, note=note, page=page
        )

    def _store(self, alarm: Alarm) -> None:
        if alarm.open:
            self._open[alarm.key] = alarm
            return
        self._open.pop(alarm.key, None)
        self._pending_off.pop(alarm.key, None)
        self._remember_closed(alarm)

    def _remember_closed(self, alarm: Alarm) -> None:
        self._closed[alarm.id] = alarm
        while len(self._closed) > self._history:
            self._closed.popitem(last=False)

    def _by_id(self, alarm_id: str) -> Alarm | None:
        found = next((a for a in self._open.values() if a.id == alarm_id), None)
        return found or self._closed.get(alarm_id)

    def _require(self, alarm_id: str, who: str) -> Alarm:
        if not who:
            raise ValueError("an operator action needs who")
        alarm = self._by_id(alarm_id)
        if alarm is None:
            raise KeyError(alarm_id)
        return alarm

    def _new_id(self, kind: str, subject: str, now: datetime) -> str:
        # Readable and unique: a new lifecycle of one key starts only after the last one closed.
        base = f"{kind}:{subject}:{now.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}"
        candidate, n = base, 1
        while self._by_id(candidate) is not None:
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    def timers(self) -> dict[str, list[list[str]]]:
        """The on-delays and off-delays now counting, as JSON (for a core that takes a site over)."""
        return {
            "on": [[k, s, t.isoformat()] for (k, s), t in sorted(self._pending_on.items())],
            "off": [[k, s, t.isoformat()] for (k, s), t in sorted(self._pending_off.items())],
        }

    def restore_timers(self, data: Mapping[str, object]) -> int:
        """Take up delays `timers()` wrote, unless one of the key counts already; how many.
        ValueError naming the entry that does not parse."""
        n = 0
        for name, pending in (("on", self._pending_on), ("off", self._pending_off)):
            entries = data.get(name, [])
            if not isinstance(entries, list):
                raise ValueError(f"timers.{name} is not a list")
            for i, entry in enumerate(entries):
                try:
                    kind, subject, at = entry
                    since = datetime.fromisoformat(at)
                except (TypeError, ValueError):
                    raise ValueError(f"timers.{name}[{i}] is not [type, subject, ISO time]") from None
                if since.tzinfo is None:
                    raise ValueError(f"timers.{name}[{i}] has no timezone")
                if pending.setdefault((str(kind), str(subject)), since) is since:
                    n += 1
        return n


def _paged(note: str, f: Finding) -> str:
    return note if f.page else f"{note} (not paged: another active alarm pages for this event)"


def _within_deadband(f: Finding, deadband: float) -> bool:
    """An inactive finding still counts as active while its value is within the deadband of its limit."""
    if deadband <= 0 or f.limit is None or isinstance(f.value, str) or f.value is None:
        return False
    return abs(f.value - f.limit) < deadband
