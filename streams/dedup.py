"""Producer resends: an ``event_id`` seen again at another position is counted once.

Bounded per partition: ids are remembered for ``window`` seconds of event time behind the
partition's newest event, and at most ``max_ids`` of them (oldest forgotten first). A resend
outside that bound is counted again; the README states the bound. The index remembers where
each id was first read, so the same record read again after a crash is not a resend.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class RecentIds:
    """event_ids recently accepted, per partition, with the position they were first read at."""

    def __init__(self, window: float, max_ids: int) -> None:
        self.window = window
        self.max_ids = max_ids
        self._ids: dict[int, OrderedDict[str, tuple[int, int, float]]] = {}
        self._newest: dict[int, float] = {}

    def forget(self) -> None:
        """After a rebalance: partitions are reloaded before their next batch."""
        self._ids.clear()
        self._newest.clear()

    def loaded(self, partition: int) -> bool:
        return partition in self._ids

    def load(self, partition: int, rows: Iterable[tuple[str, int, int, float]]) -> None:
        """Rebuild a partition's index from stored (event_id, offset, index, event time) rows,
        oldest first."""
        self._ids[partition] = OrderedDict()
        for event_id, offset, index, ts in rows:
            self.first_copy(partition, event_id, offset, index, ts)

    def first_copy(self, partition: int, event_id: str, offset: int, index: int, ts: float) -> bool:
        """True unless ``event_id`` was already accepted at another (offset, index)."""
        ids = self._ids.setdefault(partition, OrderedDict())
        seen = ids.get(event_id)
        if seen is not None:
            return (seen[0], seen[1]) == (offset, index)
        ids[event_id] = (offset, index, ts)
        newest = max(self._newest.get(partition, ts), ts)
        self._newest[partition] = newest
        horizon = newest - self.window
        while ids and (len(ids) > self.max_ids or next(iter(ids.values()))[2] < horizon):
            ids.popitem(last=False)
        return True
