"""One client connection: a trio nursery that owns the client socket, the upstream socket and four
tasks between them, around a sans-IO `Translator`.

    client ws ──► client reader ──┐                    ┌──► upstream writer ──► Gemini ws
                                  ▼                    │
                           [ Translator ]  ── Outbox ──┤
                                  ▲                    │
    client ws ◄── client writer ◄─┘ (Outbox)           └─◄ upstream reader ◄── Gemini ws

Each reader runs the translator on what it read; the translator's output goes, without waiting, into
the outbox of the socket it is for, and each socket's writer sends its outbox in order (everything
queued, in one write).  An idle writer with an empty outbox is skipped: what the kernel takes at once
is written by the reader itself, and only the rest wakes the writer.  So one direction never waits for
the other: a client that stops reading does not stop its microphone audio from reaching Gemini.  The
outboxes are bounded in bytes: a client that leaves more than `client_send_buffer` unread is closed
with 1008; a Gemini connection that stops reading is dropped as an upstream fault.  Translator steps
never wait, so each direction keeps the translator's order.  When the client leaves, the upstream is
closed and the nursery's cancel scope ends everything.  A switch to a new upstream connection (goAway,
a reconfiguring `session.update`, a resumable close) closes the old one first: Gemini refuses a resume
while its old socket is open.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import trio

from relay.deadlines import Deadlines
from relay.outbox import Outbox
from relay.stats import Stats
from relay.translate import Close, Connect, Output, Translator
from relay.transport import CLOSE_TIMEOUT, HandshakeFailed, MessageSocket, OpenConnection, SocketClosed
from relay.upstream import Upstream, UpstreamAuthError

log = logging.getLogger("relay.session")

SETUP_TIMEOUT = 20.0  # seconds for Gemini to answer `setup`
RESUME_BUDGET = 30.0  # seconds of retries for a resume before falling back to a fresh session
CONNECT_ATTEMPTS = 3  # tries for a fresh connection that fails in a way a retry can fix
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 4.0
# Handshake answers after which the same request may well succeed.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
RESPONSE_TIMEOUT = 60.0  # seconds of silence from Gemini while it owes output (general_settings.response_timeout)
CLIENT_SEND_BUFFER = 512 * 1024  # bytes (general_settings.client_send_buffer)
# Bytes of client input Gemini may leave unread: ten minutes of 16 kHz audio would not reach it.
UPSTREAM_SEND_BUFFER = 16 * 1024 * 1024
# Seconds a connection being closed gets to send what it holds and finish its closing handshake.
RETIRE_TIMEOUT = 2 * CLOSE_TIMEOUT
CANCELLED_CLOSE = 0.2  # seconds a cancelled session gives its upstream close


class _Link:
    """One upstream connection; replaced after a fault or by a switch."""

    def __init__(self) -> None:
        self.socket: MessageSocket | None = None
        self.closing = False
        self.outbox = Outbox(UPSTREAM_SEND_BUFFER)
        self.scope = trio.CancelScope()  # the whole connection, attempts and retries included
        self.done = trio.Event()  # its socket has ended: the next connection may resume the session
        self.watchdog_sleep: trio.CancelScope | None = None  # its watchdog's wait while Gemini owes nothing


class _Failed(Exception):
    """A connection attempt that ended before `setupComplete`; `transient`: a retry may succeed."""

    def __init__(self, transient: bool, message: str, status: int | None = None, code: int | None = None,
                 reason: str = "", why: str = "") -> None:
        super().__init__(message)
        self.why = why  # a word for the metrics
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
        open_upstream: OpenConnection,
        response_timeout: float = RESPONSE_TIMEOUT,
        client_send_buffer: int = CLIENT_SEND_BUFFER,
        stats: Stats | None = None,
        model: str = "",
        max_events_per_second: float = 0.0,
        max_seconds: float = 0.0,
        time_to_first_token: Callable[[float], None] | None = None,
        turn_latency: Callable[[float], None] | None = None,
        relay_latency: tuple[Callable[[float], None], Callable[[float], None]] | None = None,
        deadlines: Deadlines | None = None,
        upstreams: Mapping[str, Upstream] | None = None,
    ) -> None:
        """`deadlines`: the server's timers, which end the session after `max_seconds` (required with it).
        `upstreams`: every configured model's upstream, for a translator that names another model in `Connect`
        (a transcription session's `transcription.model`)."""
        self._ttft = time_to_first_token  # observes seconds from a response's start to its first content
        self._turn_latency = turn_latency  # ... from the client's last event before that content to the content
        self._last_client_at = 0.0
        # Observers of the seconds from reading a batch to writing what it made: (to the client, to Gemini).
        self._relay_latency = relay_latency
        self._read_at = 0.0  # when the batch being translated was read (0: output not made by a read)
        self._resp_seen, self._resp_at, self._resp_timed = 0, 0.0, True
        self.model = model  # the relay's model name, for the metrics
        self._rate = max_events_per_second  # client events per second; 0 = no limit
        self._window_end = 0.0  # the current one-second window of that count
        self._window_count = 0
        self._max_seconds = max_seconds
        self._deadlines = deadlines
        self._client = client
        self._outbox = Outbox(client_send_buffer)
        self._outbox.direct = client.send_now
        if relay_latency is not None:
            self._outbox.latency = relay_latency[0]
        self._overflowed = False  # the client fell too far behind: it is being closed with 1008
        self._stats = stats if stats is not None else Stats()
        self._response_timeout = response_timeout
        # When Gemini, owing output, has been silent too long (inf: it owes nothing); see _watch_reply.  A plain
        # float moved on by every message: a cancel scope per read cost more than the rest of the read.
        self._reply_due = math.inf
        self._open_upstream = open_upstream  # the configured transport's client side
        self._t = translator
        self._upstream = upstream
        self._upstreams = upstreams or {}
        self._label = label
        self._link: _Link | None = None
        self._nursery: trio.Nursery | None = None
        # The clock of the translator's idle_timeout_ms, and the arming it times.
        self._idle_scope: trio.CancelScope | None = None
        self._idle_epoch = -1
        self._draining = False  # the relay is shutting down: leave at the next point of rest

    @property
    def end_reason(self) -> str:
        """Why the session ended, for the metrics: the client left, or was closed for not reading."""
        return "client_too_slow" if self._overflowed else "client_closed"

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._client_writer)
                expiry = None
                if self._max_seconds:
                    assert self._deadlines is not None, "max_seconds needs the server's deadlines"
                    expiry = self._deadlines.call_at(trio.current_time() + self._max_seconds, self._expire)
                try:
                    self._route(self._t.start())
                    await self._client_reader()
                    await self._end_upstream()
                finally:
                    if expiry is not None:
                        self._deadlines.cancel(expiry)  # type: ignore[union-attr]
                nursery.cancel_scope.cancel()
        finally:
            # The server may still list this session for a moment (it closes the client socket next): a drain
            # that reaches it now has nothing to start tasks in.
            self._nursery = None
            if self._link is not None:
                self._link.closing = True
            self._stats.client_backlog_peak = max(self._stats.client_backlog_peak, self._outbox.peak)

    async def _end_upstream(self) -> None:
        """Close the upstream before cancelling the session, so that Gemini sees a clean close at once."""
        link = self._link
        if link is None or link.closing:
            return
        self._retire(link, "client session ended")
        with trio.move_on_after(RETIRE_TIMEOUT):
            await link.done.wait()

    # ------------------------------------------------------------ routing

    def _feed(self, step: Callable[[str | bytes], Output], frames: list[str | bytes]) -> None:
        """Translate frames that arrived together and queue what they make together: a burst of Gemini
        deltas reaches the client in one write.  Connects and closes end a batch, so their order holds."""
        if self._relay_latency is not None:
            self._read_at = trio.current_time()
        try:
            self._feed_timed(step, frames)
        finally:
            self._read_at = 0.0

    def _feed_timed(self, step: Callable[[str | bytes], Output], frames: list[str | bytes]) -> None:
        if len(frames) == 1:
            self._route(step(frames[0]))
            return
        client: list[bytes] = []
        upstream: list[dict[str, Any]] = []
        for frame in frames:
            out = step(frame)
            client += out.client
            upstream += out.upstream
            if out.connect is not None or out.close is not None:
                out.client, out.upstream, client, upstream = client, upstream, [], []
                self._route(out)
        if client or upstream:
            self._route(Output(client, upstream))

    def _route(self, out: Output) -> None:
        """Queue one translator output for the sockets; never waits.  Upstream messages go before a Connect:
        they belong to the connection the translator knew when it made them."""
        if out.client and not self._overflowed and not self._outbox.put(out.client, self._read_at):
            self._client_overflow()
        if out.upstream:
            self._to_upstream(out.upstream)
        if out.connect is not None:
            self._switch_to(out.connect)
        if out.close is not None:
            self._outbox.finish(out.close)
        self._watch_reply()
        if self._t.idle_armed or self._idle_scope is not None:
            self._watch_idle()
        if self._draining:
            self._leave_if_at_rest()
        if self._ttft is not None:
            self._time_first_token()

    def _time_first_token(self) -> None:
        started, has_output = self._t.response_progress
        if started != self._resp_seen:
            self._resp_seen, self._resp_at, self._resp_timed = started, trio.current_time(), False
        if has_output and not self._resp_timed:
            self._resp_timed = True
            now = trio.current_time()
            self._ttft(now - self._resp_at)  # type: ignore[misc]
            if self._turn_latency is not None and self._last_client_at:
                self._turn_latency(now - self._last_client_at)

    # ------------------------------------------------------------ drain

    def drain(self) -> None:
        """The relay is shutting down: end the session as soon as no response is in flight (1001, going away)."""
        self._draining = True
        self._leave_if_at_rest()

    def _leave_if_at_rest(self) -> None:
        if self._t.at_rest and self._outbox.close is None:
            self.go_away()

    def go_away(self) -> None:
        """Close the client with 1001 after what is queued for it; one that reads nothing is dropped after the close
        handshake's time.  The upstream is closed cleanly when the client reader ends."""
        if self._nursery is None or self._outbox.close is not None:
            return
        log.info("%s closing the client: the relay is shutting down", self._label)
        self._outbox.finish(Close(1001, "going away"))
        try:
            self._nursery.start_soon(self._overflow_deadline)
        except RuntimeError:
            # Its tasks have all ended and run() is about to return (trio closes a nursery before its owner
            # resumes): the session is over, there is nothing left to time.  This crashed the relay's shutdown.
            pass

    def _client_overflow(self) -> None:
        assert self._nursery is not None
        self._overflowed = True
        self._stats.client_send_overflows += 1
        limit = self._outbox.limit
        log.warning("%s client is not reading: more than %d bytes of events unsent; closing it with 1008",
                    self._label, limit)
        self._outbox.finish(Close(1008, f"client too slow: more than {limit} bytes of events unread"))
        self._nursery.start_soon(self._overflow_deadline)

    async def _overflow_deadline(self) -> None:
        # The writer closes the client after its current write; a client that reads nothing never lets that
        # write end, so the session ends without it.
        await trio.sleep(CLOSE_TIMEOUT)
        log.warning("%s client read nothing for %g s after being closed; dropping it", self._label, CLOSE_TIMEOUT)
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    def _to_upstream(self, messages: list[dict[str, Any]]) -> None:
        # The translator holds messages until Gemini has answered `setup` (as the Live API asks), so what comes
        # here is for the newest link; one that is closing has failed and the translator hears of it.
        link = self._link
        if link is None or link.closing:
            return
        if not link.outbox.put([orjson.dumps(m) for m in messages], self._read_at):
            assert self._nursery is not None
            self._stats.upstream_send_overflows += 1
            self._stats.upstream_failures[self.model, "send_buffer_full"] += 1
            self._retire(link, "relay send buffer full")
            self._nursery.start_soon(self._report_overflow, link)

    async def _report_overflow(self, link: _Link) -> None:
        text = f"Gemini stopped reading: more than {UPSTREAM_SEND_BUFFER} bytes of input unsent"
        log.warning("%s %s; dropping the connection", self._label, text)
        if link is self._link:
            self._route(self._t.upstream_closed(None, text))

    def _switch_to(self, connect: Connect) -> None:
        """Open the next upstream connection; an open one is closed first (break-then-make: Gemini refuses
        to resume a session whose old socket is still open)."""
        assert self._nursery is not None
        previous = self._link
        if previous is not None and not previous.closing:
            self._retire(previous, "relay switching connections")
        link = self._link = _Link()
        if self._relay_latency is not None:
            link.outbox.latency = self._relay_latency[1]
        self._nursery.start_soon(self._run_link, link, connect, previous)

    def _retire(self, link: _Link, reason: str) -> None:
        """Close `link`: its writer sends what it holds, then closes the socket; bounded by RETIRE_TIMEOUT."""
        link.closing = True
        link.outbox.finish(Close(1000, reason))
        if link.socket is None:
            link.scope.cancel()  # still connecting: nothing to say goodbye to
        else:
            link.scope.deadline = min(link.scope.deadline, trio.current_time() + RETIRE_TIMEOUT)

    def _watch_reply(self) -> None:
        """Arm the reply deadline when Gemini starts owing output, disarm it when it no longer does.  A reply that
        never comes becomes an `error` event (the link's watchdog) instead of a response left open for good."""
        if not self._t.awaiting_model:
            self._reply_due = math.inf
        elif self._reply_due == math.inf:
            self._reply_due = trio.current_time() + self._response_timeout
            if self._link is not None and self._link.watchdog_sleep is not None:
                self._link.watchdog_sleep.cancel()

    async def _watchdog(self, link: _Link) -> None:
        """Drop `link` when Gemini owes output and has sent nothing for `response_timeout` seconds."""
        if self._reply_due != math.inf:  # owed since before this connection was up: its silence starts now
            self._reply_due = trio.current_time() + self._response_timeout
        while not link.closing and link is self._link:
            due = self._reply_due
            if due == math.inf:
                with trio.CancelScope() as link.watchdog_sleep:
                    await trio.sleep_forever()
                link.watchdog_sleep = None
            elif trio.current_time() < due:
                await trio.sleep_until(due)
            else:
                log.warning("%s upstream silent for %g s during a response", self._label, self._response_timeout)
                self._stats.upstream_failures[self.model, "silent"] += 1
                self._reply_due = math.inf
                self._retire(link, "no reply in time")
                self._route(self._t.upstream_stalled(self._response_timeout))
                return

    def _watch_idle(self) -> None:
        """Run the translator's idle timer (`idle_timeout_ms`): restart it when it is armed anew, stop it when
        the user did something; when it runs out, the translator commits the silence and responds."""
        ms, epoch = self._t.idle_timeout_ms, self._t.idle_epoch
        scope = self._idle_scope
        if scope is not None and (ms is None or epoch != self._idle_epoch):
            scope.cancel()
            self._idle_scope = scope = None
        if ms is None or scope is not None:
            return
        assert self._nursery is not None
        self._idle_scope, self._idle_epoch = trio.CancelScope(), epoch
        self._nursery.start_soon(self._idle_timer, self._idle_scope, epoch, ms / 1000)

    async def _idle_timer(self, scope: trio.CancelScope, epoch: int, seconds: float) -> None:
        with scope:
            await trio.sleep(seconds)
            self._idle_scope = None
            self._route(self._t.idle_timeout(epoch))

    # ------------------------------------------------------------ client side

    async def _client_reader(self) -> None:
        try:
            while True:
                frames = await self._client.get_messages()
                if self._turn_latency is not None:
                    self._last_client_at = trio.current_time()
                if self._rate:
                    frames = self._within_rate(frames)
                    if not frames:
                        continue
                self._feed(self._t.client_frame, frames)
        except SocketClosed as exc:
            log.info("%s client left (%s)", self._label, exc.code)

    def _within_rate(self, frames: list[str | bytes]) -> list[str | bytes]:
        """The frames within `max_events_per_second` (counted per one-second window); each one over it is answered
        with a `rate_limit_exceeded` error, and counted."""
        now = trio.current_time()
        if now >= self._window_end:
            self._window_end, self._window_count = now + 1.0, 0
        room = max(0, int(self._rate) - self._window_count)
        self._window_count += len(frames)
        if len(frames) <= room:
            return frames
        for frame in frames[room:]:
            self._stats.limits["events_per_second"] += 1
            self._route(self._t.refuse_frame(
                frame, "rate_limit_exceeded", f"More than {self._rate:g} events in one second; this event was "
                "not processed. Send fewer events: pace audio as it plays, or append more of it at a time (a "
                "second or more per append when streaming a file)."))
        return frames[:room]

    def _expire(self) -> None:
        log.info("%s reached max_session_seconds (%g s); closing it", self._label, self._max_seconds)
        self._stats.limits["session_seconds"] += 1
        self._route(self._t.session_expired(self._max_seconds))
        self._nursery.start_soon(self._overflow_deadline)  # type: ignore[union-attr]

    async def _client_writer(self) -> None:
        outbox = self._outbox
        try:
            while (taken := await outbox.take()) is not None and not self._overflowed:
                await self._client.send_texts(taken[0])
                outbox.written(taken[1])
        except SocketClosed:
            return  # the client reader hears of it too and ends the session
        if outbox.close is not None:
            await self._client.close(outbox.close.code, outbox.close.reason)

    # ------------------------------------------------------------ upstream side

    async def _run_link(self, link: _Link, connect: Connect, previous: _Link | None) -> None:
        """Connect, send `setup`, wait for its answer (retrying what a retry can fix), then read until the link
        ends.  A resume that cannot succeed falls back to a fresh session through the translator."""
        try:
            with link.scope:
                if previous is not None:
                    with trio.move_on_after(SETUP_TIMEOUT):
                        await previous.done.wait()
                deadline = trio.current_time() + RESUME_BUDGET
                attempt = 0
                while True:
                    attempt += 1
                    try:
                        upstream = self._upstreams.get(connect.model or "", self._upstream)
                        await self._attempt(link, connect.setup, upstream)
                        return
                    except _Failed as failure:
                        self._stats.upstream[self.model, "resume" if connect.resume else "fresh", "failed"] += 1
                        self._stats.upstream_failures[self.model, failure.why] += 1
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
                        self._report_failure(link, connect, failure)
                        return
        finally:
            link.done.set()

    def _report_failure(self, link: _Link, connect: Connect, failure: _Failed) -> None:
        link.closing = True
        link.done.set()  # the connection the translator asks for next must not wait for this one
        if connect.resume:
            self._route(self._t.resume_failed(failure.message))
        elif failure.code is not None:
            self._route(self._t.upstream_closed(failure.code, failure.reason))
        else:
            self._route(self._t.upstream_failed(failure.status, failure.message))

    async def _attempt(self, link: _Link, setup: dict[str, Any], upstream: Upstream) -> None:
        """One connection; raises _Failed if it ends before Gemini answered `setup`."""
        try:
            target = await upstream.target()
        except UpstreamAuthError as exc:
            log.warning("%s upstream credentials failed: %s", self._label, exc)
            raise _Failed(False, str(exc), why="credentials") from None
        setup["setup"]["model"] = target.model_path
        try:
            async with self._open_upstream(target.url, list(target.headers)) as sock:
                link.socket = sock
                try:
                    first = await self._setup(sock, setup)
                    kind = "resume" if "handle" in setup["setup"].get("sessionResumption", {}) else "fresh"
                    self._stats.upstream[self.model, kind, "ok"] += 1
                    if link is self._link and not link.closing:
                        async with trio.open_nursery() as tasks:
                            tasks.start_soon(self._upstream_writer, link, sock)
                            tasks.start_soon(self._watchdog, link)
                            self._feed(self._t.upstream_frame, [first])
                            await self._upstream_reader(link, sock)
                            tasks.cancel_scope.cancel()
                finally:
                    link.socket = None
                    # Cancelled from outside (a library caller's scope), the readers are gone: a closing handshake
                    # would only wait out its timeout.  The close frame is sent all the same.
                    cancelled = trio.current_effective_deadline() == -math.inf
                    with trio.CancelScope(shield=True) as closing:
                        if cancelled:
                            closing.deadline = trio.current_time() + CANCELLED_CLOSE
                        await sock.close(1000, "client session ended")
        except HandshakeFailed as exc:
            log.warning("%s upstream connect failed: %s", self._label, exc.message)
            transient = not exc.final and (exc.status is None or exc.status in TRANSIENT_STATUSES)
            why = "unreachable" if exc.status is None else f"http_{exc.status}"
            raise _Failed(transient, exc.message, status=exc.status, why=why) from None

    async def _setup(self, sock: MessageSocket, setup: dict[str, Any]) -> str | bytes:
        """Send `setup` and return Gemini's first answer."""
        try:
            await sock.send_texts([orjson.dumps(setup)])
            with trio.move_on_after(SETUP_TIMEOUT) as waiting:
                frame = await sock.get_message()
        except SocketClosed as exc:
            # Closed before setupComplete: a refused handle (1008 "session not found") or setup (1007) is final;
            # 1011 also comes while Gemini still holds the session's old socket.
            text = f"Gemini closed the connection during setup ({exc.code})" + (f": {exc.reason}" if exc.reason
                                                                                 else "")
            raise _Failed(exc.code not in (1007, 1008), text, code=exc.code, reason=exc.reason,
                          why=f"closed_{exc.code or 1006}") from None
        if waiting.cancelled_caught:
            raise _Failed(True, f"Gemini did not answer the session setup within {SETUP_TIMEOUT:.0f} s",
                          why="setup_timeout")
        return frame

    async def _upstream_writer(self, link: _Link, sock: MessageSocket) -> None:
        outbox = link.outbox
        outbox.direct = sock.send_now
        try:
            while (taken := await outbox.take()) is not None:
                await sock.send_texts(taken[0])
                outbox.written(taken[1])
        except SocketClosed:
            return  # the link's reader hears the close and reports it
        finally:
            outbox.direct = None
        close = outbox.close or Close(1000, "")
        await sock.close(close.code, close.reason)

    async def _upstream_reader(self, link: _Link, sock: MessageSocket) -> None:
        try:
            while True:
                frames = await sock.get_messages()
                if link.closing or link is not self._link:
                    continue  # the session moved on: late frames are dropped until the writer's close ends this
                if self._reply_due != math.inf:
                    self._reply_due = trio.current_time() + self._response_timeout  # silence counts from here
                self._feed(self._t.upstream_frame, frames)
        except SocketClosed as exc:
            if not link.closing:
                log.warning("%s upstream closed: %s %s", self._label, exc.code, exc.reason)
                self._stats.upstream_failures[self.model, f"closed_{exc.code or 1006}"] += 1
                link.closing = True
                self._route(self._t.upstream_closed(exc.code, exc.reason))
