"""The live views pushed to SSE clients: the supply and each room, as the readings change them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from service.config.site import Site
from service.live.events import EventBus
from service.live.state import SUPPLY, LiveState


class LiveViews:
    """Collects the subjects changed since the last push; pushes their views (once a tick, not per reading)."""

    def __init__(self, site: Site, state: LiveState, events: EventBus) -> None:
        self.site = site
        self.state = state
        self.events = events
        self._changed: set[str] = set()

    def changed(self, subjects: Iterable[str]) -> None:
        """Subjects (rooms, SUPPLY, devices) whose view is to be pushed at the next `publish`."""
        self._changed.update(subjects)

    def publish(self, now: datetime, overrides: Mapping[str, datetime]) -> None:
        """Push the changed views as `supply` and `room` events (nothing when no client listens)."""
        changed, self._changed = self._changed, set()
        if not self.events.subscribers:
            return
        if SUPPLY in changed:
            self.events.publish("supply", self.state.supply(now).to_dict())
        for room in self.site.rooms:
            if room.id in changed:
                view = self.state.room(room.id, now).to_dict()
                until = overrides.get(room.id)
                view["override_until"] = until.isoformat() if until else None
                self.events.publish("room", view)
