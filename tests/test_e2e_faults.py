"""Upstream faults end to end (issue 11, item 6), on both transports: every fault Gemini, or the network in front of
it, can throw at a session reaches the OpenAI client as one precise `error` event (its type and code, a message
naming the upstream reason, nothing secret: no access token, API key or service-account material, neither in the
events nor in the relay's log), then a `response.done` with status `failed` for the response that was open. The
session goes on, and another session on the same relay, in the middle of a response of its own while the fault
happens, is unaffected.

| fault | `error.type` | `error.code` |
|---|---|---|
| HTTP 401 / 403 / 404 at the handshake, not retried | invalid_request_error | upstream_connection_failed |
| HTTP 429 at the handshake, retried with backoff (bounded) | invalid_request_error | rate_limit_exceeded |
| HTTP 500 / 503 at the handshake, retried likewise | server_error | upstream_connection_failed |
| TCP closed during the handshake; a handshake never answered | server_error | upstream_connection_failed |
| TLS: an untrusted certificate; a plain peer at wss:// (never retried) | server_error | upstream_connection_failed |
| close 1006 / 1011 mid-response | server_error | upstream_closed |
| close 1007 / 1008 mid-response | invalid_request_error | upstream_closed |
| silence during a response (`response_timeout`) | server_error | upstream_timeout |
| 1007 for an exhausted context: reported once, never retried in a loop | invalid_request_error | upstream_closed |

test_e2e_timeout.py covers the rest of the silence case (the reconnect after it, an idle session left alone).
The relay has no setting for its connect timeout (15 s), so the tests of a handshake that is never answered or that
fails below HTTP shorten the transports' CONNECT_TIMEOUT to CONNECT_TIMEOUT seconds.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import pytest
import trio

import relay.transport.sansio.client
import relay.transport.tws
from relay.emulator import Emulator
from relay.emulator.context import CONTEXT_EXCEEDED
from relay.emulator.network import DEAD_HANDSHAKE, STALLED_HANDSHAKE
from tests.clients import Conn, raw, types
from tests.stack import MASTER_KEY, TRANSPORTS, Stack
from tests.test_e2e_compression import (
    FITS,
    STUDIO,
    TEXT_MANUAL,
    TURNS,
    context_stack,
    errors_in,
    ga_session,
    run_until_refused,
    said,
)
from tests.test_e2e_text import text_turn, user_text
from tests.test_http import metrics
from tests.tls import localhost_contexts

SILENCE = 1.5  # general_settings.response_timeout of the fault stack
CONNECT_TIMEOUT = 1.0  # the transports' connect timeout, in the tests that may wait it out
MANY = 8  # a queue of handshake faults longer than any retry budget
MAX_ATTEMPTS = 4  # "a fresh connection is retried up to 3 times" (README)
QUIET = 1.0  # seconds in which a relay retrying in a loop would have reconnected at least once (backoff 0.5 s)
TEXT = {"output_modalities": ["text"]}


# ------------------------------------------------------------------ stacks


@pytest.fixture(scope="module")
def tls_peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """Ports of two upstreams the relay cannot open TLS with: an emulator whose self-signed certificate it does not
    trust ("untrusted"), and a plain emulator that a wss:// address points at ("plain")."""
    server_context, _ = localhost_contexts(tmp_path_factory.mktemp("tls"))
    ports: dict[str, int] = {}
    ready = threading.Event()
    handle: dict[str, object] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            handle["token"], handle["scope"] = trio.lowlevel.current_trio_token(), nursery.cancel_scope
            ports["untrusted"] = await nursery.start(
                partial(Emulator().serve, "127.0.0.1", 0, ssl_context=server_context))
            ports["plain"] = await nursery.start(partial(Emulator().serve, "127.0.0.1", 0))
            ready.set()

    thread = threading.Thread(target=trio.run, args=(main,), name="tls-peers", daemon=True)
    thread.start()
    assert ready.wait(30)
    yield ports
    trio.from_thread.run_sync(handle["scope"].cancel, trio_token=handle["token"])  # type: ignore[attr-defined]
    thread.join(10)


@pytest.fixture(scope="module", params=TRANSPORTS)
def fault_stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, tls_peers: dict[str, int]
) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("faults"), transport=request.param,
              general_settings={"response_timeout": SILENCE},
              extra_models=[
                  {"model_name": f"tls_{name}", "litellm_params": {**STUDIO, "api_base": f"wss://127.0.0.1:{port}"}}
                  for name, port in tls_peers.items()
              ]).start()
    yield s
    s.stop()


@pytest.fixture(scope="module", params=TRANSPORTS)
def limited_stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
    s = context_stack(tmp_path_factory.mktemp("context"), request.param).start()
    yield s
    s.stop()


def shorten_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay.transport.tws, "CONNECT_TIMEOUT", CONNECT_TIMEOUT)
    monkeypatch.setattr(relay.transport.sansio.client, "CONNECT_TIMEOUT", CONNECT_TIMEOUT)


@pytest.fixture
def relay_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything the relay logs, at every level (what RELAY_LOG_LEVEL=DEBUG shows an operator)."""
    caplog.set_level(logging.DEBUG, logger="relay")
    return caplog


def known_bug(request: pytest.FixtureRequest, stack: Stack, bugs: dict[str, str]) -> None:
    """Mark this test an expected failure on the transports `bugs` names (transport → diagnosis)."""
    if stack.transport in bugs:
        request.applymarker(pytest.mark.xfail(reason=bugs[stack.transport], strict=True))


# ------------------------------------------------------------------ the other session

_tags = itertools.count(1)


def connections_with(stack: Stack, text: str) -> list[int]:
    """The upstream connections (indexes into `by_connection`) that carried `text`."""
    assert stack.emulator is not None
    return [i for i, conn in enumerate(list(stack.emulator.by_connection)) if any(text in json.dumps(m) for m in conn)]


def assert_completed(events: list[dict], text: str) -> None:
    assert not errors_in(events), events
    assert events[-1]["response"]["status"] == "completed", events[-1]
    assert said(events) == f"Echo: {text}"


@contextmanager
def bystander(stack: Stack) -> Iterator[None]:
    """Another session on the same relay (beta dialect) for the whole block: it has done a turn before it, and a slow
    response of its own is streaming while the block runs. Afterwards that response completes, so does one more turn,
    with no `error`, and all three went over one upstream connection (the fault elsewhere made it reconnect nothing).
    """
    tag = f"bystander{next(_tags):04d}"
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "OpenAI-Beta": "realtime=v1"}
    with raw(stack, headers=headers, dialect="beta") as c:
        assert c.recv()["type"] == "session.created"
        c.send({"type": "session.update", "session": {"modalities": ["text"]}})
        assert c.recv()["type"] == "session.updated"
        assert_completed(text_turn(c, f"{tag} before"), f"{tag} before")
        slow = f"[fault:slow] {tag} streams on"  # two chunks, half a second apart
        c.send(user_text(slow))
        c.send({"type": "response.create"})
        c.until("response.created")
        yield
        assert_completed(c.until("response.done"), slow)
        assert_completed(text_turn(c, f"{tag} after"), f"{tag} after")
    assert len(connections_with(stack, tag)) == 1


# ------------------------------------------------------------------ what the client sees


def secrets(stack: Stack) -> list[str]:
    """What must never reach a client or a log: access tokens, the AI Studio key, the master key, and the service
    account's private key (its id, its PEM body)."""
    account = json.loads((stack.tmp / "sa.json").read_text())
    pem = [line for line in account["private_key"].splitlines() if line and "-----" not in line]
    return [stack.tokens.prefix, STUDIO["api_key"], MASTER_KEY, account["private_key_id"], "PRIVATE KEY", *pem[:4]]


def assert_nothing_secret(stack: Stack, c: Conn, log: pytest.LogCaptureFixture) -> None:
    seen = json.dumps(c.events)
    logged = log.text
    for secret in secrets(stack):
        assert secret not in seen, f"a secret reached the client: {secret[:12]}..."
        assert secret not in logged, f"a secret reached the relay's log: {secret[:12]}..."


def assert_fault(events: list[dict], kind: str, code: str, reason: tuple[str, ...]) -> dict:
    """One `error` of `kind` and `code` whose message names every part of `reason`, then `response.done` failed
    with that same error; returns the error."""
    (error,) = errors_in(events)
    assert (error["type"], error["code"]) == (kind, code), error
    for part in reason:
        assert part in error["message"], (part, error["message"])
    assert types(events).index("error") < len(events) - 1
    done = events[-1]
    assert done["type"] == "response.done"
    assert done["response"]["status"] == "failed"
    details = done["response"]["status_details"]
    assert details["type"] == "failed"
    assert (details["error"]["type"], details["error"]["code"]) == (kind, code)
    return error


def assert_session_goes_on(c: Conn, text: str = "after the fault") -> None:
    assert_completed(text_turn(c, text), text)


def least_backoff(retries: int) -> float:
    """The shortest the relay may wait over `retries` retries: 0.5 s doubling, less 20 % jitter."""
    return sum(0.8 * min(4.0, 0.5 * 2**i) for i in range(retries))


# ------------------------------------------------------------------ handshake faults


@dataclass(frozen=True)
class HandshakeFault:
    id: str
    faults: tuple[int, ...]  # what the emulator answers the next upgrades with (handshake_faults)
    error: tuple[str, str, tuple[str, ...]] | None  # (type, code, message parts); None: a retry gets through
    retried: bool | None  # True: retried with backoff; False: one attempt only; None: either, a bounded number
    waits: bool = False  # the relay may wait for its connect timeout (shortened to CONNECT_TIMEOUT)
    bugs: dict[str, str] = field(default_factory=dict)  # transport → why it fails there (xfail)

    def __str__(self) -> str:
        return self.id


REFUSED = "upstream_connection_failed"
HANDSHAKE_FAULTS = [
    HandshakeFault("http-401", (401,) * MANY, ("invalid_request_error", REFUSED, (
        "HTTP 401", "UNAUTHENTICATED", "Request had invalid authentication credentials.")), retried=False),
    HandshakeFault("http-403", (403,) * MANY, ("invalid_request_error", REFUSED, (
        "HTTP 403", "PERMISSION_DENIED", "The caller does not have permission.")), retried=False),
    HandshakeFault("http-404", (404,) * MANY, ("invalid_request_error", REFUSED, (
        "HTTP 404", "NOT_FOUND", "Requested entity was not found.")), retried=False),
    HandshakeFault("http-429-always", (429,) * MANY, ("invalid_request_error", "rate_limit_exceeded", (
        "HTTP 429", "RESOURCE_EXHAUSTED")), retried=True),
    HandshakeFault("http-429-then-ok", (429, 429), None, retried=True),
    HandshakeFault("http-500-always", (500,) * MANY, ("server_error", REFUSED, ("HTTP 500", "INTERNAL")), retried=None),
    HandshakeFault("http-503-always", (503,) * MANY, ("server_error", REFUSED, ("HTTP 503", "UNAVAILABLE")),
                   retried=True),
    HandshakeFault("http-503-then-ok", (503, 503), None, retried=True),
    # The emulator closes the TCP connection without answering the upgrade: the message says it was closed.
    HandshakeFault("dead-handshake-always", (DEAD_HANDSHAKE,) * MANY, ("server_error", REFUSED, ("closed",)),
                   retried=True, waits=True),
    HandshakeFault("dead-handshake-then-ok", (DEAD_HANDSHAKE,), None, retried=True, waits=True),
    # The emulator never answers the upgrade: the connect timeout.
    HandshakeFault("stalled-handshake-always", (STALLED_HANDSHAKE,) * MANY, ("server_error", REFUSED, (
        f"no handshake within {CONNECT_TIMEOUT:g} s",)), retried=True, waits=True),
]


def failures(stack: Stack) -> Counter[str]:
    """relay_upstream_failures_total by reason, scraped."""
    return Counter({dict(labels)["reason"]: value for (name, labels), value in metrics(stack).items()
                    if name == "relay_upstream_failures_total"})


@pytest.mark.parametrize("case", HANDSHAKE_FAULTS, ids=str)
def test_handshake_fault(fault_stack, relay_log, request, monkeypatch, case: HandshakeFault):
    stack = fault_stack
    emulator = stack.emulator
    assert emulator is not None
    known_bug(request, stack, case.bugs)
    if case.waits:
        shorten_connect_timeout(monkeypatch)
    try:
        with bystander(stack), ga_session(stack, "vertex_gemini_live_text", TEXT) as c:
            emulator.handshake_faults.extend(case.faults)
            before = failures(stack)
            started = time.monotonic()
            events = text_turn(c, "hello")
            elapsed = time.monotonic() - started
            attempts = len(case.faults) - len(emulator.handshake_faults) + (case.error is None)
            counted = failures(stack) - before
            assert sum(counted.values()) == attempts - (case.error is None), counted
            if case.faults[0] not in (DEAD_HANDSHAKE, STALLED_HANDSHAKE):
                assert set(counted) == {f"http_{case.faults[0]}"}, counted
            if case.error is None:
                assert_completed(events, "hello")
            else:
                assert_fault(events, *case.error)
            assert_nothing_secret(stack, c, relay_log)
            assert 1 <= attempts <= MAX_ATTEMPTS, attempts
            if case.retried is False:
                assert attempts == 1
            elif case.retried:
                assert attempts >= 2 and elapsed >= least_backoff(attempts - 1), (attempts, elapsed)
            emulator.handshake_faults.clear()
            assert_session_goes_on(c)
    finally:
        emulator.handshake_faults.clear()


TLS_FAULTS = [
    pytest.param("tls_untrusted", ("certificate verify failed",), id="untrusted-certificate"),
    pytest.param("tls_plain", ("SSL",), id="plain-peer"),  # e.g. "[SSL: WRONG_VERSION_NUMBER] wrong version number"
]


@pytest.mark.parametrize(("model", "reason"), TLS_FAULTS)
def test_tls_failure(fault_stack, relay_log, monkeypatch, model: str, reason: tuple[str, ...]):
    stack = fault_stack
    shorten_connect_timeout(monkeypatch)
    with bystander(stack), ga_session(stack, model, TEXT) as c:
        events = text_turn(c, "hello")
        assert_fault(events, "server_error", REFUSED, reason)
        assert_nothing_secret(stack, c, relay_log)
        # A certificate or protocol mismatch is final: one attempt, no backoff.
        assert not [r for r in relay_log.records if "retrying" in r.getMessage()], "a TLS failure was retried"
        # The client connection is still served (the upstream is as broken as before).
        c.send({"type": "conversation.item.retrieve", "item_id": "no-such-item"})
        assert c.recv()["error"]["code"] == "item_not_found"


# ------------------------------------------------------------------ faults during a response

MID_RESPONSE_FAULTS = [
    pytest.param("[fault:mid-1006]", "server_error", "upstream_closed", ("1006",), id="close-1006"),
    pytest.param("[fault:mid-1007]", "invalid_request_error", "upstream_closed",
                 ("1007", "Request contains an invalid argument."), id="close-1007"),
    pytest.param("[fault:mid-1008]", "invalid_request_error", "upstream_closed",
                 ("1008", "Requested entity was not found."), id="close-1008"),
    pytest.param("[fault:mid-1011]", "server_error", "upstream_closed", ("1011", "Internal error occurred."),
                 id="close-1011"),
    pytest.param("[fault:silent]", "server_error", "upstream_timeout", (f"{SILENCE:g} s",), id="silence"),
]


@pytest.mark.parametrize(("trigger", "kind", "code", "reason"), MID_RESPONSE_FAULTS)
def test_fault_during_a_response(fault_stack, relay_log, trigger: str, kind: str, code: str, reason: tuple[str, ...]):
    stack = fault_stack
    with bystander(stack), ga_session(stack, "vertex_gemini_live_text", TEXT) as c:
        assert_completed(text_turn(c, "before the fault"), "before the fault")
        text = f"{trigger} one two three four five six"
        before = failures(stack)
        events = text_turn(c, text)
        assert_fault(events, kind, code, reason)
        counted = failures(stack) - before
        assert counted == Counter({"silent" if trigger == "[fault:silent]" else f"closed_{trigger[-5:-1]}": 1})
        done = events[-1]["response"]
        if trigger == "[fault:silent]":
            assert said(events) == "" and done["output"] == []
        else:
            # The close came mid-response: the first chunk had arrived, and the item ends incomplete with it.
            partial_text = said(events)
            assert partial_text and f"Echo: {text}".startswith(partial_text) and partial_text != f"Echo: {text}"
            (item,) = done["output"]
            assert item["status"] == "incomplete" and item["content"][0]["text"] == partial_text
        assert_nothing_secret(stack, c, relay_log)
        assert_session_goes_on(c)


# ------------------------------------------------------------------ an exhausted context


def assert_quiet(stack: Stack, c: Conn, connections: int) -> None:
    """For QUIET seconds the relay opens no upstream connection by itself; then the client's next event is the answer
    to its own request, not a second report of the fault."""
    assert stack.emulator is not None
    until = time.monotonic() + QUIET
    while time.monotonic() < until:  # waiting for something that must not happen: nothing to await
        assert stack.emulator.connections == connections, "the relay reconnected by itself"
        time.sleep(0.05)
    c.send({"type": "conversation.item.retrieve", "item_id": "no-such-item"})
    assert c.recv()["error"]["code"] == "item_not_found"


def test_exhausted_context_is_reported_once_and_never_retried_in_a_loop(limited_stack, relay_log):
    """Gemini closes with 1007 "The input token count exceeds..." once the context is full (no compression): the
    client hears it once, and the relay does not reconnect by itself; a further request is tried once, not in a loop."""
    stack = limited_stack
    assert stack.emulator is not None
    with bystander(stack):
        start = stack.emulator.connections
        with ga_session(stack, "uncompressed", TEXT_MANUAL) as c:
            assert run_until_refused(c, TURNS) == FITS + 1  # one error naming the 1007, the response failed
            assert stack.emulator.connections == start + 1
            assert_quiet(stack, c, start + 1)
            # The conversation still exceeds the context: the next turn fails the same way, after one attempt at most.
            events = text_turn(c, "one more")
            assert events[-1]["response"]["status"] == "failed"
            (error,) = errors_in(events)
            assert CONTEXT_EXCEEDED[1] in error["message"]
            assert stack.emulator.connections <= start + 2
            assert_quiet(stack, c, stack.emulator.connections)
            assert_nothing_secret(stack, c, relay_log)
