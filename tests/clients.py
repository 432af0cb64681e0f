"""Test clients: the official `openai` SDK (beta and GA) and raw websockets, each validating every
event it receives against the SDK schema of its dialect."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from openai import OpenAI
from websockets.sync.client import connect as ws_connect

from tests.schemas import validate_openai
from tests.stack import MASTER_KEY, Stack


class Conn:
    """One client connection; `recv()` parses and validates, `until()` collects a sequence."""

    def __init__(self, send, recv_raw, dialect: str) -> None:
        self._send = send
        self._recv_raw = recv_raw
        self.dialect = dialect  # "beta", "ga" or "both" (before the first event decides)
        self.events: list[dict[str, Any]] = []

    def send(self, event: dict[str, Any]) -> None:
        self._send(event)

    def send_raw(self, frame: str) -> None:
        raise NotImplementedError

    def recv(self) -> dict[str, Any]:
        event = json.loads(self._recv_raw())
        validate_openai(event, self.dialect)
        self.events.append(event)
        return event

    def until(self, kind: str, limit: int = 500) -> list[dict[str, Any]]:
        got = []
        for _ in range(limit):
            event = self.recv()
            got.append(event)
            if event["type"] == kind:
                return got
        raise AssertionError(f"no {kind} within {limit} events: {[e['type'] for e in got]}")


@contextmanager
def sdk_ga(stack: Stack, model: str = "vertex_gemini_live_text", key: str = MASTER_KEY) -> Iterator[Conn]:
    client = OpenAI(api_key=key, base_url=stack.http_base)
    with client.realtime.connect(model=model) as conn:
        c = Conn(conn.send, conn.recv_bytes, "ga")
        c.sdk = conn  # type: ignore[attr-defined]
        yield c


@contextmanager
def sdk_beta(stack: Stack, model: str = "vertex_gemini_live_text", key: str = MASTER_KEY) -> Iterator[Conn]:
    # The beta client forces wss:// unless websocket_base_url says otherwise (protocols.md 1.1).
    client = OpenAI(api_key=key, base_url=stack.http_base, websocket_base_url=stack.ws_base)
    with client.beta.realtime.connect(model=model) as conn:
        c = Conn(conn.send, conn.recv_bytes, "beta")
        c.sdk = conn  # type: ignore[attr-defined]
        yield c


@contextmanager
def raw(
    stack: Stack,
    model: str = "vertex_gemini_live_text",
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
    dialect: str = "both",
) -> Iterator[Conn]:
    hdrs = {"Authorization": f"Bearer {MASTER_KEY}"} if headers is None else headers
    with ws_connect(
        stack.url(model), additional_headers=hdrs, subprotocols=subprotocols, max_size=None, open_timeout=10
    ) as ws:
        c = Conn(lambda ev: ws.send(json.dumps(ev)), lambda: ws.recv(timeout=15), dialect)
        c.send_raw = ws.send  # type: ignore[method-assign]
        c.ws = ws  # type: ignore[attr-defined]
        yield c


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def squash(names: list[str]) -> list[str]:
    """Collapse runs of the same delta event into one, so orders can be compared exactly."""
    out: list[str] = []
    for n in names:
        if out and n == out[-1] and n.endswith(".delta"):
            continue
        out.append(n)
    return out
