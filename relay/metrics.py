"""Prometheus metrics of one relay server, computed when `/metrics` is scraped.

The hot path only bumps plain integers (in `Stats`, on the server and in each session's translator); this
collector turns them into metric families at scrape time, so counting costs a session nothing measurable.
Names follow the OpenTelemetry GenAI semantic conventions where one exists (`gen_ai.client.token.usage`,
exported here as the counter `relay_gen_ai_client_token_usage_total` with `gen_ai_token_type` and
`gen_ai_request_model` labels); the rest are the relay's own, prefixed `relay_`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from relay.translate import Translator


@attrs.define
class Totals:
    """What the server counts beside each session's own counters (keys are label tuples)."""

    open: Counter[tuple[str, str]] = attrs.field(factory=Counter)  # (model, dialect)
    ended: Counter[tuple[str, str]] = attrs.field(factory=Counter)  # (model, end reason)
    refused: Counter[str] = attrs.field(factory=Counter)  # handshake refusals by reason
    tokens: Counter[tuple[str, str]] = attrs.field(factory=Counter)  # (model, input|output), ended sessions
    audio_in: Counter[str] = attrs.field(factory=Counter)  # seconds by model, ended sessions
    by_key: Counter[str] = attrs.field(factory=Counter)  # open sessions by client key name
    live: dict[int, tuple[str, Translator]] = attrs.field(factory=dict)  # open sessions' translators

    def session_ended(self, key: int, reason: str) -> None:
        model, t = self.live.pop(key)
        self.ended[model, reason] += 1
        self.tokens[model, "input"] += t.tokens_in
        self.tokens[model, "output"] += t.tokens_out
        self.audio_in[model] += t.audio_in_seconds


class RelayCollector:
    """A prometheus_client collector over a server's `Totals` and `Stats`."""

    def __init__(self, totals: Totals, stats: Any) -> None:
        self._totals = totals
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        t = self._totals
        sessions = GaugeMetricFamily("relay_sessions_open", "Client sessions open now.", labels=["model", "dialect"])
        for (model, dialect), n in sorted(t.open.items()):
            sessions.add_metric([model, dialect], n)
        yield sessions
        ended = CounterMetricFamily("relay_sessions_ended", "Client sessions ended, by why.",
                                    labels=["model", "end_reason"])
        for (model, reason), n in sorted(t.ended.items()):
            ended.add_metric([model, reason], n)
        yield ended
        refused = CounterMetricFamily("relay_handshakes_refused", "WebSocket handshakes refused, by reason "
                                      "(invalid_api_key counts authentication failures).", labels=["reason"])
        for reason, n in sorted(t.refused.items()):
            refused.add_metric([reason], n)
        yield refused
        upstream = CounterMetricFamily("relay_upstream_connections", "Connection attempts to Gemini: fresh or "
                                       "resumed, and how they went.", labels=["model", "kind", "outcome"])
        for (model, kind, outcome), n in sorted(self._stats.upstream.items()):
            upstream.add_metric([model, kind, outcome], n)
        yield upstream
        tokens = Counter(t.tokens)
        audio = Counter(t.audio_in)
        for model, tr in list(t.live.values()):
            tokens[model, "input"] += tr.tokens_in
            tokens[model, "output"] += tr.tokens_out
            audio[model] += tr.audio_in_seconds
        usage = CounterMetricFamily("relay_gen_ai_client_token_usage", "Tokens Gemini reported per finished "
                                    "response (OpenTelemetry gen_ai.client.token.usage, as a counter).",
                                    labels=["gen_ai_request_model", "gen_ai_token_type"])
        for (model, kind), n in sorted(tokens.items()):
            usage.add_metric([model, kind], n)
        yield usage
        audio_in = CounterMetricFamily("relay_audio_input_seconds", "Seconds of client audio streamed to Gemini.",
                                       labels=["model"])
        for model, seconds in sorted(audio.items()):
            audio_in.add_metric([model], seconds)
        yield audio_in
        keys = GaugeMetricFamily("relay_sessions_open_by_key", "Client sessions open now, by the name of the key "
                                 "they presented (anonymous on a relay without keys).", labels=["key"])
        for name, n in sorted(t.by_key.items()):
            keys.add_metric([name], n)
        yield keys
        s = self._stats
        limits = CounterMetricFamily("relay_limit_rejections", "What a limit refused: sessions, key_sessions "
                                     "(handshakes answered 429), events_per_second (events answered "
                                     "rate_limit_exceeded), session_seconds (sessions closed).", labels=["limit"])
        for limit, n in sorted(s.limits.items()):
            limits.add_metric([limit], n)
        yield limits
        yield CounterMetricFamily("relay_client_send_overflows", "Clients closed with 1008 for leaving more than "
                                  "client_send_buffer unread.", value=s.client_send_overflows)
        yield CounterMetricFamily("relay_upstream_send_overflows", "Gemini connections dropped for leaving more "
                                  "than the upstream send buffer unread.", value=s.upstream_send_overflows)


def registry_for(totals: Totals, stats: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RelayCollector(totals, stats))  # type: ignore[arg-type]
    return registry


def exposition(registry: CollectorRegistry) -> tuple[str, bytes]:
    return CONTENT_TYPE_LATEST, generate_latest(registry)
