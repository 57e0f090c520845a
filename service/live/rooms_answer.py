"""The last /api/rooms body, kept while the room views it was made of are the live state's."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import orjson

from service.config import office
from service.config.site import Site
from service.live.state import LiveState


class RoomsAnswer:
    """The JSON of one page of rooms, made again only when a room view or the overrides changed.

    Room views are immutable and the live state keeps each until its room changes or a value in it
    goes stale, and overrides are replaced, never changed in place; so while every view (and the
    overrides) is the very same object, the JSON is the same too.
    """

    __slots__ = ("body", "overrides", "page", "rules", "total", "views")

    def __init__(self) -> None:
        self.views: tuple[object, ...] = ()
        self.overrides: object = None
        self.page = (0, 0)
        self.body = b""
        self.total = 0
        self.rules: tuple[object, dict[str, dict[str, object]]] = (None, {})

    def answer(
        self, state: LiveState, overrides: Mapping[str, datetime], site: Site, now: datetime, limit: int, offset: int
    ) -> tuple[bytes, int]:
        """The JSON body of a page of rooms and the number of rooms."""
        views = tuple(state.rooms(now))
        same = (
            overrides is self.overrides
            and self.page == (limit, offset)
            and len(views) == len(self.views)
            and all(a is b for a, b in zip(views, self.views, strict=True))
        )
        if not same:
            rules = self._rules(site)
            items = [{**v.to_dict(), "override_until": overrides.get(v.id), **rules[v.id]} for v in views]
            self.body = orjson.dumps(items[offset : offset + limit], option=orjson.OPT_UTC_Z)
            self.views, self.overrides, self.page, self.total = views, overrides, (limit, offset), len(items)
        return self.body, self.total

    def _rules(self, site: Site) -> dict[str, dict[str, object]]:
        """Each room's office-rule settings (effective thresholds, heating, approvals): fixed per site file."""
        if self.rules[0] is not site:
            self.rules = (site, {r.id: office.room_rules(site, r) for r in site.rooms})
        return self.rules[1]
