"""Crash injection for tests of crash safety: ``LLMTEL_FAILPOINT=<when>:<table>:<n>``.

``after_insert:events:3`` ends the process (as ``kill -9`` would: no cleanup, no flush, no
commit) right after the 3rd insert into ``events`` succeeds; ``during_insert:events:3`` ends
it a few milliseconds into that insert. Unset in normal runs, where it costs one dict lookup.
"""

from __future__ import annotations

import os
import threading

_counts: dict[str, int] = {}


def _spec() -> tuple[str, str, int] | None:
    raw = os.environ.get("LLMTEL_FAILPOINT")
    if not raw:
        return None
    when, table, n = raw.split(":")
    return when, table, int(n)


SPEC = _spec()


def _die() -> None:
    os._exit(137)


def before_insert(table: str) -> None:
    if SPEC is None or SPEC[1] != table:
        return
    _counts[table] = _counts.get(table, 0) + 1
    if SPEC[0] == "during_insert" and _counts[table] == SPEC[2]:
        threading.Timer(0.005, _die).start()


def after_insert(table: str) -> None:
    if (
        SPEC is not None
        and SPEC[0] == "after_insert"
        and SPEC[1] == table
        and _counts.get(table) == SPEC[2]
    ):
        _die()
