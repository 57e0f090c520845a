"""Source transfers of transfer switches, told from what feeds each switch's load over time. Pure.

A transfer is an interruption of the load's supply that ended: the source feeding the load is lost,
the load is without a source for a while, and then it is fed again — by another source or the
generator (`transfer`), by the preferred source, the switch's first, after running on another
(`retransfer`), or by the same source come back before the switch moved (`restored`). A change of
the feeding source with no moment seen without one (a closed transition, or an open one shorter
than the polls can see) is a transfer with no measured interruption (0 s).

The interruption runs from the first observation of the load without a source to the first one of
it fed again; with the live state's reading timestamps, its resolution is the switch's and the
meters' poll interval. Observations where what feeds the load is unknown (data missing or stale)
neither start nor end an interruption; one that began before the first observation of a switch
(the load never seen fed) is not a transfer either, having no known start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from service.live.jsonable import json_fields

TransferKind = Literal["transfer", "retransfer", "restored"]
TRANSFER_KINDS: tuple[str, ...] = get_args(TransferKind)


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    """One ended interruption of a switch's load: from which source to which, when, and how long."""

    switch: str
    kind: TransferKind
    from_source: str
    to_source: str
    lost_at: datetime  # first seen without a source (= `at` when no interruption was seen)
    at: datetime  # first seen fed again
    interruption_s: float
    allowed_interruption_s: float

    @property
    def within_allowed(self) -> bool:
        """Whether the switch-over finished within allowed_interruption_s (DESIGN.md §1)."""
        return self.interruption_s <= self.allowed_interruption_s

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (GET /api/compliance `live`, the SSE supply event, the store)."""
        return {
            **json_fields(self, "switch", "kind", "from_source", "to_source", "lost_at", "at"),
            "interruption_s": round(self.interruption_s, 3),
            **json_fields(self, "allowed_interruption_s", "within_allowed"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transfer:
        """Back from `to_dict` (KeyError, TypeError or ValueError for a record that does not fit)."""
        kind = data["kind"]
        if kind not in TRANSFER_KINDS:
            raise ValueError(f"transfer kind {kind!r} is not one of {', '.join(TRANSFER_KINDS)}")
        lost_at, at = datetime.fromisoformat(data["lost_at"]), datetime.fromisoformat(data["at"])
        if lost_at.tzinfo is None or at.tzinfo is None:
            raise ValueError("transfer times must carry a UTC offset")
        return cls(
            switch=str(data["switch"]),
            kind=kind,
            from_source=str(data["from_source"]),
            to_source=str(data["to_source"]),
            lost_at=lost_at,
            at=at,
            interruption_s=float(data["interruption_s"]),
            allowed_interruption_s=float(data["allowed_interruption_s"]),
        )


@dataclass(slots=True)
class _Track:
    feeding: str | None = None  # the source last seen feeding the load
    lost_at: datetime | None = None  # since when the load has been seen without it
    last_at: datetime | None = None  # the latest observation taken


class TransferDetector:
    """Follows what feeds each switch's load and tells each transfer when it ends."""

    def __init__(self, preferred: Mapping[str, str], allowed_interruption_s: float) -> None:
        """`preferred`: each switch's preferred source (its first); the site's allowed interruption."""
        self._preferred = dict(preferred)
        self._allowed_s = allowed_interruption_s
        self._tracks = {switch: _Track() for switch in preferred}

    def observe(self, switch: str, *, known: bool, feeding: str | None, at: datetime) -> Transfer | None:
        """What fed `switch`'s load at `at` (None: nothing; `known` False: cannot tell); the transfer it ends."""
        track = self._tracks[switch]
        if not known:
            return None
        if track.last_at is not None and at < track.last_at:
            at = track.last_at  # readings of several devices are not quite in order; time does not run back
        track.last_at = at
        if feeding is None:
            if track.feeding is not None and track.lost_at is None:
                track.lost_at = at
            return None
        was, lost_at = track.feeding, track.lost_at
        track.feeding, track.lost_at = feeding, None
        if was is None or (lost_at is None and feeding == was):
            return None  # the first time the load is seen fed, or nothing changed
        start = lost_at if lost_at is not None else at
        return Transfer(
            switch=switch,
            kind=self._kind(switch, was, feeding),
            from_source=was,
            to_source=feeding,
            lost_at=start,
            at=at,
            interruption_s=(at - start).total_seconds(),
            allowed_interruption_s=self._allowed_s,
        )

    def _kind(self, switch: str, was: str, now: str) -> TransferKind:
        if now == was:
            return "restored"
        return "retransfer" if now == self._preferred[switch] else "transfer"


def latest(transfers: Iterable[Transfer]) -> Transfer | None:
    """The transfer that ended last."""
    return max(transfers, key=lambda t: t.at, default=None)
