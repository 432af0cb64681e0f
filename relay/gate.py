"""`Gate`: a strict FIFO mutex that costs nothing when it is free.

trio's locks pass through the scheduler on every acquire, contended or not; on the relay's hot path
(one acquire per translator step, one per socket write) that trip is a large share of a message's
cost.  A free gate is taken without yielding; a busy one parks the caller, and release hands
ownership to the longest waiter, so order is first come, first served.
"""

from __future__ import annotations

from types import TracebackType

import trio


class Gate:
    __slots__ = ("_held", "_lot")

    def __init__(self) -> None:
        self._held = False
        self._lot = trio.lowlevel.ParkingLot()

    def locked(self) -> bool:
        return self._held

    def try_acquire(self) -> bool:
        """Take the gate if it is free, without a checkpoint.  It is ownerless: another task may release it."""
        if self._held:
            return False
        self._held = True
        return True

    async def acquire(self) -> None:
        if not self._held:
            await trio.lowlevel.checkpoint_if_cancelled()  # a cancellation point, without a scheduler pass
            self._held = True
            return
        await self._lot.park()  # returns owning the gate: release() handed it over

    def release(self) -> None:
        assert self._held, "release of a gate that is not held"
        if self._lot:
            self._lot.unpark()  # ownership passes on; the gate stays held
        else:
            self._held = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
