"""Prometheus metrics of one relay server, computed when `/metrics` is scraped.

The hot path only bumps plain integers (in `Stats`, on the server and in each session's translator); this
collector turns them into metric families at scrape time, so counting costs a session nothing measurable.
Names follow the OpenTelemetry GenAI semantic conventions where one exists (`gen_ai.client.token.usage`,
exported here as the counter `relay_gen_ai_client_token_usage_total` with `gen_ai_token_type` and
`gen_ai_request_model` labels); the rest are the relay's own, prefixed `relay_`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.samples import Sample

if TYPE_CHECKING:
    from relay.translate import Translator


@attrs.define
class Totals:
    """What the server counts beside each session's own counters (keys are label tuples)."""

    open: Counter[tuple[str, str]] = attrs.field(factory=Counter)  # (model, dialect)
    started: Counter[tuple[str, str]] = attrs.field(factory=Counter)  # (model, dialect at the handshake)
    ended: Counter[tuple[str, str]] = attrs.field(factory=Counter)  # (model, end reason)
    refused: Counter[str] = attrs.field(factory=Counter)  # handshake refusals by reason
    tokens: Counter[tuple[str, str]] = attrs.field(factory=Counter)  # (model, input|output), ended sessions
    audio_in: Counter[str] = attrs.field(factory=Counter)  # seconds by model, ended sessions
    audio_out: Counter[str] = attrs.field(factory=Counter)  # seconds by model, ended sessions
    limits: Counter[str] = attrs.field(factory=Counter)  # what the translators' bounds refused, ended sessions
    by_key: Counter[str] = attrs.field(factory=Counter)  # open sessions by client key name
    events: Counter[tuple[str, str]] = attrs.field(factory=Counter)  # (model, client event type), ended sessions
    messages: Counter[tuple[str, str]] = attrs.field(factory=Counter)  # (model, Gemini message kind), ended
    live: dict[int, tuple[str, Translator]] = attrs.field(factory=dict)  # open sessions' translators

    def session_ended(self, key: int, reason: str) -> None:
        model, t = self.live.pop(key)
        self.ended[model, reason] += 1
        self.tokens[model, "input"] += t.tokens_in
        self.tokens[model, "output"] += t.tokens_out
        self.audio_in[model] += t.audio_in_seconds
        self.audio_out[model] += t.audio_out_seconds
        self.limits["frame_size"] += t.oversized
        self.limits["resume_buffer"] += t.audio_dropped
        for kind, n in t.events_in.items():
            self.events[model, kind] += n
        for kind, n in t.messages_in.items():
            self.messages[model, kind] += n


class RelayCollector:
    """A prometheus_client collector over a server's `Totals` and `Stats`."""

    def __init__(self, totals: Totals, stats: Any) -> None:
        self._totals = totals
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        t, s = self._totals, self._stats
        tokens, audio, events, messages = Counter(t.tokens), Counter(t.audio_in), Counter(t.events), Counter(t.messages)
        audio_out, limits = Counter(t.audio_out), Counter(s.limits) + t.limits
        for model, tr in list(t.live.values()):
            tokens[model, "input"] += tr.tokens_in
            tokens[model, "output"] += tr.tokens_out
            audio[model] += tr.audio_in_seconds
            audio_out[model] += tr.audio_out_seconds
            limits["frame_size"] += tr.oversized
            limits["resume_buffer"] += tr.audio_dropped
            for kind, n in list(tr.events_in.items()):
                events[model, kind] += n
            for kind, n in list(tr.messages_in.items()):
                messages[model, kind] += n
        yield _family(GaugeMetricFamily, "relay_sessions_open", "Client sessions open now.", ["model", "dialect"],
                      t.open)
        yield _family(CounterMetricFamily, "relay_sessions_started", "Client sessions accepted.",
                      ["model", "dialect"], t.started)
        yield _family(CounterMetricFamily, "relay_sessions_ended", "Client sessions ended, by why.",
                      ["model", "end_reason"], t.ended)
        yield _family(CounterMetricFamily, "relay_handshakes_refused", "WebSocket handshakes refused, by reason "
                      "(invalid_api_key counts authentication failures).", ["reason"], t.refused)
        yield _family(CounterMetricFamily, "relay_upstream_connections", "Connection attempts to Gemini: fresh or "
                      "resumed, and how they went.", ["model", "kind", "outcome"], s.upstream)
        yield _family(CounterMetricFamily, "relay_upstream_failures", "Gemini connections that failed (each attempt) "
                      "or ended before the client left, by reason: credentials, unreachable, http_<status>, "
                      "closed_<code>, setup_timeout, silent (no reply in response_timeout), send_buffer_full.",
                      ["model", "reason"], s.upstream_failures)
        yield _family(CounterMetricFamily, "relay_client_events", "Client events by type (direction client to "
                      "relay).", ["model", "type"], events)
        yield _family(CounterMetricFamily, "relay_upstream_messages", "Gemini messages by kind (direction Gemini to "
                      "relay).", ["model", "type"], messages)
        yield _family(CounterMetricFamily, "relay_gen_ai_client_token_usage", "Tokens Gemini reported per finished "
                      "response (OpenTelemetry gen_ai.client.token.usage, as a counter).",
                      ["gen_ai_request_model", "gen_ai_token_type"], tokens)
        yield _family(CounterMetricFamily, "relay_audio_input_seconds", "Seconds of client audio streamed to Gemini.",
                      ["model"], audio)
        yield _family(CounterMetricFamily, "relay_audio_output_seconds", "Seconds of audio sent to clients.",
                      ["model"], audio_out)
        yield _family(GaugeMetricFamily, "relay_sessions_open_by_key", "Client sessions open now, by the name of the "
                      "key they presented (anonymous on a relay without keys).", ["key"], t.by_key)
        yield _family(CounterMetricFamily, "relay_limit_rejections", "What a limit refused: sessions, key_sessions "
                      "(handshakes answered 429), events_per_second (events answered rate_limit_exceeded), "
                      "session_seconds (sessions closed), frame_size (events answered message_too_large), "
                      "resume_buffer (audio dropped past resume_buffer_seconds).", ["limit"], +limits)
        yield CounterMetricFamily("relay_client_send_overflows", "Clients closed with 1008 for leaving more than "
                                  "client_send_buffer unread.", value=s.client_send_overflows)
        yield CounterMetricFamily("relay_upstream_send_overflows", "Gemini connections dropped for leaving more "
                                  "than the upstream send buffer unread.", value=s.upstream_send_overflows)


def _family(kind: type[Any], name: str, doc: str, labels: list[str], counts: Mapping[Any, float]) -> Metric:
    """A metric family with one sample per key of `counts` (a label value, or a tuple of them), in key order."""
    family = kind(name, doc, labels=labels)
    for key, value in sorted(counts.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


# Seconds from a response's start to its first content; voice agents care about the low end.
TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
# Seconds a message spends in the relay: well under a millisecond unless a socket falls behind.
RELAY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@attrs.frozen
class Timers:
    """The server's histograms; each session observes through the children of its model."""

    time_to_first_token: Histogram
    turn_latency: Histogram
    relay_latency: Histogram

    def for_model(self, model: str) -> dict[str, Any]:
        """Session keyword arguments: observers for `model`."""
        return {"time_to_first_token": self.time_to_first_token.labels(model).observe,
                "turn_latency": self.turn_latency.labels(model).observe,
                "relay_latency": (self.relay_latency.labels(model, "to_client").observe,
                                  self.relay_latency.labels(model, "to_gemini").observe)}


def registry_for(totals: Totals, stats: Any) -> tuple[CollectorRegistry, Timers]:
    """The server's registry, and its histograms."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RelayCollector(totals, stats))  # type: ignore[arg-type]
    timers = Timers(
        Histogram("gen_ai_server_time_to_first_token_seconds", "Seconds from a response's start (the client's "
                  "response.create, or Gemini's own start under server VAD) to its first content (OpenTelemetry "
                  "gen_ai.server.time_to_first_token, as the relay sees it).", ["gen_ai_request_model"],
                  buckets=TTFT_BUCKETS, registry=registry),
        Histogram("relay_turn_latency_seconds", "Seconds from the client's last event before a response's first "
                  "content to that content: what a user waits after speaking or sending.", ["model"],
                  buckets=TTFT_BUCKETS, registry=registry),
        Histogram("relay_added_latency_seconds", "Seconds from reading a message off one socket to writing what it "
                  "made to the other (translation and queueing in the relay), timed per write.",
                  ["model", "direction"], buckets=RELAY_BUCKETS, registry=registry),
    )
    return registry, timers


class Source:
    """What `/metrics` shows: the server's registry alone, or (under `serve --workers N`) every worker's metrics
    with a `worker` label, this one's live and the others' from the snapshots each writes every SHARE_INTERVAL
    seconds to a directory they share.  A scrape through the shared port reaches any one worker and sees all."""

    def __init__(self, registry: CollectorRegistry, worker: int | None = None, directory: str | None = None) -> None:
        self._registry = registry
        self.worker = worker
        self._directory = Path(directory) if directory is not None else None

    @property
    def shared(self) -> bool:
        return self._directory is not None

    def _own(self) -> list[Metric]:
        families = list(self._registry.collect())
        return families if self.worker is None else [_labelled(f, str(self.worker)) for f in families]

    def collect(self) -> list[Metric]:
        own = self._own()
        if self._directory is None:
            return own
        merged = {f.name: f for f in own}
        for path in sorted(self._directory.glob("worker-*.json")):
            if path.name == f"worker-{self.worker}.json":
                continue
            try:
                families = _loads(path.read_bytes())
            except (OSError, ValueError):
                continue  # a worker that died (its file removed) or a snapshot being replaced: next scrape
            for family in families:
                if family.name in merged:
                    merged[family.name].samples.extend(family.samples)
                else:
                    merged[family.name] = family
        return list(merged.values())

    def share(self) -> None:
        """Write this worker's snapshot (atomically: readers see the old one or the new one)."""
        assert self._directory is not None
        path = self._directory / f"worker-{self.worker}.json"
        part = path.with_suffix(".part")
        part.write_bytes(_dumps(self._own()))
        os.replace(part, path)


SHARE_INTERVAL = 1.0  # seconds: how stale another worker's figures may be in a scrape


def _labelled(family: Metric, worker: str) -> Metric:
    out = Metric(family.name, family.documentation, family.type, family.unit)
    out.samples = [s._replace(labels={**s.labels, "worker": worker}) for s in family.samples]
    return out


def _dumps(families: list[Metric]) -> bytes:
    return json.dumps([{"name": f.name, "help": f.documentation, "type": f.type, "unit": f.unit,
                        "samples": [[s.name, s.labels, s.value] for s in f.samples]} for f in families]).encode()


def _loads(data: bytes) -> list[Metric]:
    families = []
    for entry in json.loads(data):
        family = Metric(entry["name"], entry["help"], entry["type"], entry["unit"])
        family.samples = [Sample(name, labels, value) for name, labels, value in entry["samples"]]
        families.append(family)
    return families


def exposition(source: Source) -> tuple[str, bytes]:
    return CONTENT_TYPE_LATEST, generate_latest(source)  # type: ignore[arg-type]
