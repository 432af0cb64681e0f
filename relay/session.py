"""One client connection: a trio nursery that owns the client socket, the upstream socket and the
tasks between them, around a sans-IO `Translator`.

    client ws ─► client reader ─┐                  ┌─► Gemini
                                ├─► Translator ─► ─┤
    Gemini ───► upstream reader ┘                  └─► client ws

Two tasks read, one per socket; whichever read a frame runs the translator and writes its output to
both sockets itself, under one FIFO lock, so outputs leave in the order the translator made them and
a slow socket holds back the reader feeding it (TCP's buffers are the only queues).  The events of
one translator step go out in one write.  When the client leaves, the nursery's cancel scope ends
everything, upstream included.  An upstream that fails becomes an `error` event; the next thing
that needs the model opens a fresh upstream (the translator replays the conversation).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import Any

import orjson
import trio

from relay.gate import Gate
from relay.translate import Connect, Output, Translator
from relay.transport import HandshakeFailed, MessageSocket, OpenConnection, SocketClosed, open_connection
from relay.upstream import Upstream, UpstreamAuthError

log = logging.getLogger("relay.session")

SETUP_TIMEOUT = 20.0  # seconds for Gemini to answer `setup`
RESUME_BUDGET = 30.0  # seconds of retries for a resume before falling back to a fresh session
CONNECT_ATTEMPTS = 3  # tries for a fresh connection that fails in a way a retry can fix
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 4.0
# Handshake answers after which the same request may well succeed.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
RESPONSE_TIMEOUT = 60.0  # seconds of silence from Gemini while it owes output (general_settings.response_timeout)


class _Link:
    """One upstream connection; replaced after a fault or by a switch."""

    def __init__(self) -> None:
        self.socket: MessageSocket | None = None
        self.closing = False
        self.done = trio.Event()  # its socket has ended: the next connection may resume the session


class _Failed(Exception):
    """A connection attempt that ended before `setupComplete`; `transient`: a retry may succeed."""

    def __init__(self, transient: bool, message: str, status: int | None = None, code: int | None = None,
                 reason: str = "") -> None:
        super().__init__(message)
        self.transient = transient
        self.message = message
        self.status = status
        self.code = code
        self.reason = reason


def backoff(attempt: int) -> float:
    """Jittered exponential backoff: about 0.5 s, growing to 4 s."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)


class Session:
    def __init__(
        self,
        client: MessageSocket,
        translator: Translator,
        upstream: Upstream,
        label: str,
        open_upstream: OpenConnection = open_connection,
        response_timeout: float = RESPONSE_TIMEOUT,
    ) -> None:
        self._client = client
        self._response_timeout = response_timeout
        # The upstream reader's wait, given a deadline while Gemini owes output (see _watch_reply).
        self._reply_wait: trio.CancelScope | None = None
        self._open_upstream = open_upstream  # the configured transport's client side
        self._t = translator
        self._upstream = upstream
        self._label = label
        self._link: _Link | None = None
        self._nursery: trio.Nursery | None = None
        # Two tasks feed the translator; its outputs must reach the sockets in the order it made
        # them, even when one task blocks on a slow socket mid-dispatch.
        self._dispatching = Gate()

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._dispatch(self._t.start)
                await self._client_reader()
                await self._close_upstream()
                nursery.cancel_scope.cancel()
        finally:
            if self._link is not None:
                self._link.closing = True

    async def _close_upstream(self) -> None:
        """Close the upstream before cancelling the session: the close handshake needs the
        connection's reader still running, or it waits out its whole timeout."""
        link = self._link
        if link is None or link.socket is None or link.closing:
            return
        link.closing = True
        await link.socket.close(1000, "client session ended")

    # ------------------------------------------------------------ dispatch

    async def _dispatch(self, step: Callable[..., Output], *args: Any) -> None:
        """Run one translator step and send its output.  Steps run inside the gate, so the sockets get
        outputs in exactly the order the translator made them, whichever task made them."""
        async with self._dispatching:
            await self._deliver(step(*args))

    async def _dispatch_all(self, step: Callable[[str | bytes], Output], frames: list[str | bytes]) -> None:
        """Translate frames that arrived together and send what they make together: a burst of Gemini
        deltas reaches the client in one write.  Connects and closes end a batch, so their order holds."""
        async with self._dispatching:
            batch: Output | None = None
            for frame in frames:
                out = step(frame)
                if batch is None:
                    batch = out
                elif batch.connect is None and batch.close is None and out.connect is None:
                    batch.client += out.client
                    batch.upstream += out.upstream
                    batch.close = out.close
                else:
                    await self._deliver(batch)
                    batch = out
            if batch is not None:
                await self._deliver(batch)

    async def _deliver(self, out: Output) -> None:
        """Send one output; the gate must be held."""
        if out.client:
            try:
                await self._client.send_texts(out.client)
            except SocketClosed:
                assert self._nursery is not None
                self._nursery.cancel_scope.cancel()
                return
        if out.upstream:
            await self._send_upstream(out.upstream)
        if out.connect is not None:
            self._switch_to(out.connect)
        if out.close is not None:
            await self._client.close(out.close.code, out.close.reason)
        self._watch_reply()

    def _switch_to(self, connect: Connect) -> None:
        """Open the next upstream connection; an open one is closed first (break-then-make: Gemini refuses
        to resume a session whose old socket is still open)."""
        assert self._nursery is not None
        previous = self._link
        if previous is not None and not previous.closing:
            previous.closing = True
            if previous.socket is not None:
                # The socket itself, not the link: the link's reader may be leaving (and clearing it) meanwhile.
                self._nursery.start_soon(self._retire, previous.socket)
        link = self._link = _Link()
        self._nursery.start_soon(self._run_link, link, connect, previous)

    async def _retire(self, sock: MessageSocket) -> None:
        await sock.close(1000, "relay switching connections")

    def _watch_reply(self) -> None:
        """Arm the upstream reader's deadline when Gemini starts owing output, disarm it when it no longer does.
        A reply that never comes becomes an `error` event instead of a response left open for good."""
        wait = self._reply_wait
        if wait is None:
            return
        if not self._t.awaiting_model:
            wait.deadline = math.inf
        elif wait.deadline == math.inf:
            wait.deadline = trio.current_time() + self._response_timeout

    async def _send_upstream(self, messages: list[dict[str, Any]]) -> None:
        # The translator holds messages until Gemini has answered `setup` (as the Live API asks), so a live
        # link has its socket by now.
        link = self._link
        if link is None or link.closing or link.socket is None:
            return  # that link died; the translator has heard of it or is about to
        try:
            await link.socket.send_texts([orjson.dumps(m) for m in messages])
        except SocketClosed:
            pass  # the link's reader hears the close and reports it

    # ------------------------------------------------------------ client side

    async def _client_reader(self) -> None:
        try:
            while True:
                frames = await self._client.get_messages()
                await self._dispatch_all(self._t.client_frame, frames)
        except SocketClosed as exc:
            log.info("%s client left (%s)", self._label, exc.code)

    # ------------------------------------------------------------ upstream side

    async def _run_link(self, link: _Link, connect: Connect, previous: _Link | None) -> None:
        """Connect, send `setup`, wait for its answer (retrying what a retry can fix), then read until the link
        ends.  A resume that cannot succeed falls back to a fresh session through the translator."""
        try:
            if previous is not None:
                with trio.move_on_after(SETUP_TIMEOUT):
                    await previous.done.wait()
            deadline = trio.current_time() + RESUME_BUDGET
            attempt = 0
            while True:
                attempt += 1
                try:
                    await self._attempt(link, connect.setup)
                    return
                except _Failed as failure:
                    if link is not self._link:
                        return
                    delay = backoff(attempt)
                    retry = failure.transient and (
                        trio.current_time() + delay < deadline if connect.resume else attempt < CONNECT_ATTEMPTS
                    )
                    if retry:
                        log.info("%s upstream attempt %d failed (%s); retrying in %.1f s",
                                 self._label, attempt, failure.message, delay)
                        await trio.sleep(delay)
                        continue
                    await self._report_failure(link, connect, failure)
                    return
        finally:
            link.done.set()

    async def _report_failure(self, link: _Link, connect: Connect, failure: _Failed) -> None:
        link.closing = True
        link.done.set()  # the connection the translator asks for next must not wait for this one
        if connect.resume:
            await self._dispatch(self._t.resume_failed, failure.message)
        elif failure.code is not None:
            await self._dispatch(self._t.upstream_closed, failure.code, failure.reason)
        else:
            await self._dispatch(self._t.upstream_failed, failure.status, failure.message)

    async def _attempt(self, link: _Link, setup: dict[str, Any]) -> None:
        """One connection; raises _Failed if it ends before Gemini answered `setup`."""
        try:
            target = await self._upstream.target()
        except UpstreamAuthError as exc:
            log.warning("%s upstream credentials failed: %s", self._label, exc)
            raise _Failed(False, str(exc)) from None
        setup["setup"]["model"] = target.model_path
        try:
            async with self._open_upstream(target.url, list(target.headers)) as sock:
                link.socket = sock
                try:
                    await self._link_reader(link, sock, setup)
                finally:
                    link.socket = None
                    with trio.CancelScope(shield=True):
                        await sock.close(1000, "client session ended")
        except HandshakeFailed as exc:
            log.warning("%s upstream connect failed: %s", self._label, exc.message)
            transient = exc.status is None or exc.status in TRANSIENT_STATUSES
            raise _Failed(transient, exc.message, status=exc.status) from None

    async def _link_reader(self, link: _Link, sock: MessageSocket, setup: dict[str, Any]) -> None:
        try:
            await sock.send_texts([orjson.dumps(setup)])
            with trio.move_on_after(SETUP_TIMEOUT) as waiting:
                frame = await sock.get_message()
        except SocketClosed as exc:
            # Closed before setupComplete: a refused handle (1008 "session not found") or setup (1007) is final;
            # 1011 also comes while Gemini still holds the session's old socket.
            text = f"Gemini closed the connection during setup ({exc.code})" + (f": {exc.reason}" if exc.reason
                                                                                 else "")
            raise _Failed(exc.code not in (1007, 1008), text, code=exc.code, reason=exc.reason) from None
        if waiting.cancelled_caught:
            raise _Failed(True, f"Gemini did not answer the session setup within {SETUP_TIMEOUT:.0f} s")
        if link is not self._link:
            return
        await self._dispatch(self._t.upstream_frame, frame)
        try:
            while True:
                with trio.CancelScope() as wait:
                    self._reply_wait = wait
                    self._watch_reply()
                    frames = await sock.get_messages()
                if self._reply_wait is wait:
                    self._reply_wait = None
                if link.closing or link is not self._link:
                    return  # the session moved on to another connection: late frames of this one are dropped
                if wait.cancelled_caught:
                    log.warning("%s upstream silent for %g s during a response", self._label, self._response_timeout)
                    link.closing = True
                    await self._dispatch(self._t.upstream_stalled, self._response_timeout)
                    return
                await self._dispatch_all(self._t.upstream_frame, frames)
        except SocketClosed as exc:
            if not link.closing:
                log.warning("%s upstream closed: %s %s", self._label, exc.code, exc.reason)
                link.closing = True
                await self._dispatch(self._t.upstream_closed, exc.code, exc.reason)
