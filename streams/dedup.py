"""Producer resends: an ``event_id`` seen again at another position is counted once.

Bounded per partition: ids are remembered for ``window`` seconds of event time behind the
partition's newest event, and at most ``max_ids`` of them (oldest forgotten first). A resend
outside that bound is counted again; the README states the bound. The index remembers where
each id was first read, so the same record read again after a crash is not a resend.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

INDEX_BITS = 24  # an array element's index in its record (records are at most a few MB)
POSITION_BITS = 64  # offset and index; the event time in milliseconds sits above them
POSITION_MASK = (1 << POSITION_BITS) - 1


class RecentIds:
    """event_ids recently accepted, per partition, with the position they were first read at.

    Kept small, as there may be millions: per id, one int packing the event time in
    milliseconds, the offset and the element index, and the id in a queue of arrival order.
    """

    def __init__(self, window: float, max_ids: int) -> None:
        self.window = window
        self.max_ids = max_ids
        self._ids: dict[int, dict[str, int]] = {}
        self._order: dict[int, deque[str]] = {}
        self._newest: dict[int, float] = {}

    def forget(self) -> None:
        """After a rebalance: partitions are reloaded before their next batch."""
        self._ids.clear()
        self._order.clear()
        self._newest.clear()

    def loaded(self, partition: int) -> bool:
        return partition in self._ids

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._ids.values())

    def load(self, partition: int, rows: Iterable[tuple[str, int, int, float]]) -> None:
        """Rebuild a partition's index from stored (event_id, offset, index, event time) rows,
        oldest first."""
        self._ids[partition] = {}
        self._order[partition] = deque()
        for event_id, offset, index, ts in rows:
            self.first_copy(partition, event_id, offset, index, ts)

    def first_copy(self, partition: int, event_id: str, offset: int, index: int, ts: float) -> bool:
        """True unless ``event_id`` was already accepted at another (offset, index)."""
        ids = self._ids.get(partition)
        if ids is None:
            ids = self._ids[partition] = {}
            self._order[partition] = deque()
        position = offset << INDEX_BITS | index
        seen = ids.get(event_id)
        if seen is not None:
            return seen & POSITION_MASK == position
        ids[event_id] = int(ts * 1000) << POSITION_BITS | position
        order = self._order[partition]
        order.append(event_id)
        newest = max(self._newest.get(partition, ts), ts)
        self._newest[partition] = newest
        horizon = int((newest - self.window) * 1000)
        while order and (len(order) > self.max_ids or ids[order[0]] >> POSITION_BITS < horizon):
            del ids[order.popleft()]
        return True
