"""`Deadlines`: far-off one-shot timers for many sessions, all run by one task.

A session's `max_session_seconds` (two hours by default) used to be a task of its own asleep for that long: about
3 KiB of memory per idle session, for a timer that almost never fires.  Here a timer is a small heap entry.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable

import trio

log = logging.getLogger("relay.deadlines")


class Timer:
    """One pending call (`Deadlines.cancel` drops its callback, and what that holds, at once)."""

    __slots__ = ("callback", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback: Callable[[], None] | None = callback

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when


class Deadlines:
    """Calls each callback at its trio time, from `run()` (started once, in the server's nursery).  Callbacks
    must not wait; one that raises is logged and the others still run."""

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._sleep: trio.CancelScope | None = None
        self._cancelled = 0  # cancelled timers still in the heap

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback)
        heap = self._heap
        heapq.heappush(heap, timer)
        if heap[0] is timer and self._sleep is not None:
            self._sleep.cancel()  # earlier than the deadline being waited for
        return timer

    def cancel(self, timer: Timer) -> None:
        if timer.callback is None:
            return
        timer.callback = None
        self._cancelled += 1
        # Cancelled timers would otherwise stay until their time: under session churn, hours of them.
        if self._cancelled > 32 and self._cancelled * 2 > len(self._heap):
            self._heap = [t for t in self._heap if t.callback is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    async def run(self) -> None:
        while True:
            now = trio.current_time()
            # self._heap, not a local: a callback may cancel timers, and so compact the heap into a new list.
            while self._heap and (self._heap[0].callback is None or self._heap[0].when <= now):
                timer = heapq.heappop(self._heap)
                callback, timer.callback = timer.callback, None
                if callback is None:
                    self._cancelled -= 1
                else:
                    try:
                        callback()
                    except Exception:
                        log.exception("a deadline's callback failed")
            with trio.CancelScope(deadline=self._heap[0].when if self._heap else math.inf) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None
