"""The library from asyncio: `relay.aio.connect` runs `relay.connect`'s session under trio in a worker thread of
its own, and hands events between the two loops with their thread-safe calls.

    async with relay.aio.connect(model="vertex_gemini_live_text") as session:
        await session.send({...})
        async for event in session:
            ...

A send waits until the trio side has taken the event (a slow session slows the sender, as a socket would); at
most `EVENT_BUFFER` events wait for the asyncio side, then the trio side waits too.  Leaving the block closes the
session as a client closing its socket does (cancelling the task in it too).  What the trio side raises
(`ConfigError`, `SessionRefused` when opening; anything later) is raised here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import trio

from relay.library import EVENT_BUFFER, ConfigSource, Kind, RelaySession, SessionClosed, until_closed
from relay.library import connect as trio_connect

__all__ = ["AsyncioSession", "connect"]

CLOSE_WAIT = 10.0  # seconds for the session to end by itself on leaving the block, before it is cancelled


class AsyncioSession:
    """`relay.RelaySession`'s asyncio face: `send`, `recv`, `async for`, `close`, `close_info`, `model`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.model = ""
        self._loop = loop
        self._events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()  # None: the end
        self._room = threading.Semaphore(EVENT_BUFFER)  # events the asyncio side may still be handed
        self._inner: RelaySession | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._error: BaseException | None = None
        self._ended = False

    async def send(self, event: dict[str, Any] | Any) -> None:
        """As `RelaySession.send`."""
        inner, token = self._inner, self._token
        if inner is None or token is None:
            raise self._end_error()
        try:
            await asyncio.to_thread(trio.from_thread.run, inner.send, event, trio_token=token)
        except trio.RunFinishedError:
            raise self._end_error() from None

    async def recv(self) -> dict[str, Any]:
        """As `RelaySession.recv`."""
        if self._ended:
            raise self._end_error()
        event = await self._events.get()
        if event is None:
            self._ended = True
            raise self._end_error()
        self._room.release()
        return event

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return until_closed(self.recv)

    @property
    def close_info(self) -> tuple[int | None, str] | None:
        return self._inner.close_info if self._inner is not None else None

    async def close(self) -> None:
        """As `RelaySession.close`: end the session (leaving the block does it)."""
        inner, token = self._inner, self._token
        if inner is None or token is None:
            return
        try:
            await asyncio.to_thread(trio.from_thread.run, inner.close, trio_token=token)
        except (trio.RunFinishedError, RuntimeError):
            pass

    def _end_error(self) -> BaseException:
        if self._error is not None:
            return self._error
        code, reason = self.close_info or (1000, "")
        return SessionClosed(code, reason)

    # ------------------------------------------------------------ the trio side (the worker thread)

    async def _pump(self, inner: RelaySession) -> None:
        async for event in inner:
            if not self._room.acquire(blocking=False):
                await trio.to_thread.run_sync(self._room.acquire)
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)


@asynccontextmanager
async def connect(
    config: ConfigSource = None,
    model: str | None = None,
    dialect: Literal["ga", "beta"] = "ga",
    *,
    kind: Kind = "realtime",
) -> AsyncIterator[AsyncioSession]:
    """`relay.connect` for asyncio programs: the same arguments, the same session, the same errors."""
    loop = asyncio.get_running_loop()
    session = AsyncioSession(loop)
    opened: asyncio.Future[None] = loop.create_future()
    scope = trio.CancelScope()

    def settle(error: BaseException | None) -> None:
        if opened.done():
            return
        if error is None:
            opened.set_result(None)
        else:
            opened.set_exception(error)

    async def run() -> None:
        try:
            with scope:
                async with trio_connect(config, model, dialect, kind=kind) as inner:
                    session._inner, session._token = inner, trio.lowlevel.current_trio_token()
                    session.model = inner.model
                    loop.call_soon_threadsafe(settle, None)
                    await session._pump(inner)
        except BaseException as exc:
            session._error = exc
            loop.call_soon_threadsafe(settle, exc)
        finally:
            session._token = None
            loop.call_soon_threadsafe(session._events.put_nowait, None)

    worker = threading.Thread(target=trio.run, args=(run,), name="relay-session", daemon=True)
    worker.start()
    try:
        await opened
    except BaseException:
        await asyncio.to_thread(worker.join)
        raise
    try:
        yield session
    finally:
        await _finish(session, scope, worker)


async def _finish(session: AsyncioSession, scope: trio.CancelScope, worker: threading.Thread) -> None:
    """Close the session as a client does, wait for the thread; cancel the trio side if it does not end."""
    await session.close()
    session._ended = True  # as a trio session after its block: recv says the session is closed
    session._room.release(EVENT_BUFFER + 1)  # a pump waiting for room nobody will make goes on to its end
    await asyncio.to_thread(worker.join, CLOSE_WAIT)
    if worker.is_alive() and session._token is not None:
        try:
            trio.from_thread.run_sync(scope.cancel, trio_token=session._token)
        except trio.RunFinishedError:
            pass
        await asyncio.to_thread(worker.join)
