"""The server's shared timers (each session's max_session_seconds)."""

from __future__ import annotations

import trio
import trio.testing

from relay.deadlines import Deadlines


async def test_timers_fire_in_order_and_cancelled_ones_never(autojump_clock: trio.testing.MockClock) -> None:
    deadlines = Deadlines()
    fired: list[tuple[str, float]] = []

    def at(name: str):
        return lambda: fired.append((name, trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        deadlines.call_at(start + 10, at("late"))
        dropped = deadlines.call_at(start + 3, at("cancelled"))
        deadlines.call_at(start + 5, at("early"))  # earlier than the one being waited for: wakes the task
        deadlines.cancel(dropped)
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    assert [(name, when - start) for name, when in fired] == [("early", 5), ("late", 10)]


async def test_a_failing_callback_is_logged_and_the_rest_still_run(autojump_clock, caplog) -> None:
    deadlines = Deadlines()
    fired: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        now = trio.current_time()
        deadlines.call_at(now + 1, boom)
        deadlines.call_at(now + 2, lambda: fired.append("after"))
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert fired == ["after"]
    assert "a deadline's callback failed" in caplog.text


def test_cancelled_timers_do_not_pile_up_under_churn() -> None:
    deadlines = Deadlines()
    for i in range(10_000):
        timer = deadlines.call_at(7200.0 + i, lambda: None)
        deadlines.cancel(timer)
    assert len(deadlines) <= 64
