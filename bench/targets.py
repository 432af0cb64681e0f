"""The Targets table of `bench all`: each performance target, per relay transport, met or not, with the figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench.common import fmt_ratio, ratio
from bench.report import ScenarioResult, Table, fmt
from bench.scale import TARGET_RATIO

# The transports issue 14's targets name: the fast one has the higher targets, the default its own.
FAST_TRANSPORT = "websockets"
DEFAULT_TRANSPORT = "trio-websocket"
IDLE_SESSIONS = 10_000  # the idle-memory target is set at this many sessions

Check = tuple[str, bool | None]  # (figures, met: True / False / None = not measured)


def _paths(results: dict[str, ScenarioResult], scenario: str) -> dict[str, dict[str, Any]]:
    found = results.get(scenario)
    if found is None:
        return {}
    return found.data.get("paths") or found.data.get("servers") or {}


def _ok(p: dict[str, Any] | None) -> bool:
    return p is not None and "failed" not in p


def _passed_at(phases: list[dict[str, Any]], n: int) -> dict[str, Any] | None:
    """The last passing phase at exactly n sessions."""
    found = [p for p in phases if p["sessions"] == n and p.get("verdict", "pass").endswith("pass")]
    return found[-1] if found else None


def evaluate(results: Sequence[ScenarioResult], *, peer_requested: bool, peer_error: str | None) -> ScenarioResult:
    by = {r.name: r for r in results}
    text, reply = _paths(by, "text"), _paths(by, "audio-reply")
    idle, connect, audio = _paths(by, "idle"), _paths(by, "connect"), _paths(by, "audio")
    scale: dict[str, dict[str, Any]] = by["scale"].data.get("ratios", {}) if "scale" in by else {}
    relays = [label for label, p in {**text, **audio, **idle}.items() if p.get("kind") == "relay"] + list(scale)
    relays = list(dict.fromkeys(relays))
    no_peer = "not measured: " + (peer_error or "LiteLLM failed") if peer_requested else "not measured (--peer litellm)"
    litellm_text, litellm_audio = text.get("litellm"), audio.get("litellm")

    def text_p50(limit: float) -> Callable[[str], Check]:
        def check(label: str) -> Check:
            p, d = text.get(label), text.get("direct")
            if not (_ok(p) and _ok(d)):
                return "no figures", None
            r = p["done_p50_vs_direct"]
            return (f"{fmt_ratio(r)}: {fmt(p['sequential']['done_ms']['p50'])} vs "
                    f"{fmt(d['sequential']['done_ms']['p50'])} ms"), r is not None and r <= limit
        return check

    def text_vs_litellm(limit: float) -> Callable[[str], Check]:
        def check(label: str) -> Check:
            p = text.get(label)
            if not (_ok(p) and _ok(litellm_text)):
                return no_peer, None
            r = p["done_p50_vs_litellm"]
            return (f"{fmt_ratio(r)}: {fmt(p['sequential']['done_ms']['p50'])} vs "
                    f"{fmt(litellm_text['sequential']['done_ms']['p50'])} ms"), r is not None and r <= limit
        return check

    def reply_vs(other: str, limit: float) -> Callable[[str], Check]:
        def check(label: str) -> Check:
            p, d = reply.get(label), reply.get(other)
            if not (_ok(p) and _ok(d)):
                return (no_peer if other == "litellm" else "no figures"), None
            r = p["done_p50_vs_direct" if other == "direct" else "done_p50_vs_litellm"]
            return f"{fmt_ratio(r)}: {fmt(p['done_ms']['p50'])} vs {fmt(d['done_ms']['p50'])} ms", \
                r is not None and r <= limit
        return check

    def parallel(label: str) -> Check:
        p = text.get(label)
        if not (_ok(p) and _ok(litellm_text)):
            return no_peer, None
        r = p["turns_per_s_vs_litellm"]
        return (f"{fmt_ratio(r)}: {fmt(p['parallel']['turns_per_s'], 0)} vs "
                f"{fmt(litellm_text['parallel']['turns_per_s'], 0)} turns/s"), r is not None and r >= 2.0

    def vs_bare(limit: float) -> Callable[[str], Check]:
        def check(label: str) -> Check:
            p = audio.get(label)
            bare = audio.get(label.replace("relay", "bare", 1))
            if not (_ok(p) and _ok(bare)):
                return "no figures", None
            r = p.get("vs_bare")
            cpu = p.get("vs_bare_cpu")
            extra = f"; by CPU per chunk {fmt_ratio(cpu)}" if cpu is not None else ""
            return (f"{fmt_ratio(r)}: {p['max_sessions']} vs {bare['max_sessions']} bare "
                    f"({bare['limited_by']}){extra}"), r is not None and r >= limit
        return check

    def vs_litellm(limit: float) -> Callable[[str], Check]:
        def check(label: str) -> Check:
            p = audio.get(label)
            if not (_ok(p) and _ok(litellm_audio)):
                return no_peer, None
            r = p.get("vs_litellm")
            return (f"{fmt_ratio(r)}: {p['max_sessions']} ({p['limited_by']}) vs {litellm_audio['max_sessions']} "
                    f"({litellm_audio['limited_by']})"), r is not None and r >= limit
        return check

    def cpu_vs_litellm(label: str) -> Check:
        p = audio.get(label)
        if not (_ok(p) and _ok(litellm_audio)):
            return no_peer, None
        # The largest N both carried: CPU per chunk falls with load, so only equal N compares.
        both = [(n, a, b) for n in sorted({ph["sessions"] for ph in p["phases"]}, reverse=True)
                if (a := _passed_at(p["phases"], n)) and (b := _passed_at(litellm_audio["phases"], n))]
        if not both:
            return "no N that both carried", None
        n, a, b = both[0]
        r = ratio(a["server_cpu_us_per_chunk"], b["server_cpu_us_per_chunk"])
        return (f"{fmt_ratio(r)}: {fmt(a['server_cpu_us_per_chunk'], 0)} vs {fmt(b['server_cpu_us_per_chunk'], 0)} "
                f"µs at {n} sessions"), r is not None and r <= 0.5

    def scale_out(label: str) -> Check:
        r = scale.get(label)
        if r is None or r.get("ratio") is None or r.get("workers") != 2:
            return "no figures", None
        one, two = r["sessions"]
        return (f"{fmt_ratio(r['ratio'])}: {two} vs {one} sessions; per relay core "
                f"{fmt_ratio(r.get('per_relay_core_ratio'))}"), r["ratio"] >= TARGET_RATIO

    def connect_latency(label: str) -> Check:
        p = connect.get(label)
        if not _ok(p):
            return "no figures", None
        ms = p["sequential"]["ready_ms"]
        return f"p50 {fmt(ms['p50'])} ms, p99 {fmt(ms['p99'])} ms (sequential)", ms["p50"] is not None and \
            ms["p50"] < 1.2

    def rss_start(label: str) -> Check:
        p = idle.get(label)
        if not _ok(p) or p["rss_start_kib"] is None:
            return "no figures", None
        return f"{p['rss_start_kib'] / 1024:.1f} MiB", p["rss_start_kib"] < 60 * 1024

    def rss_idle(label: str) -> Check:
        p = idle.get(label)
        if not _ok(p) or p["kib_per_session"] is None:
            return "no figures", None
        figures = f"{p['kib_per_session']:.1f} KiB ({p['opened']:,} sessions)"
        if p["opened"] < IDLE_SESSIONS:
            return figures + f": fewer than the target's {IDLE_SESSIONS:,}", None
        return figures, p["kib_per_session"] < 24

    ws, tws = (FAST_TRANSPORT,), (DEFAULT_TRANSPORT,)
    # (target, check, the transports it is set for: None = every relay)
    checks: list[tuple[str, Callable[[str], Check], tuple[str, ...] | None]] = [
        ("20 ms full-duplex audio sessions per core ≥ 2x LiteLLM's (each to its own ceiling)", vs_litellm(2.0), ws),
        ("server CPU per audio chunk round trip ≤ 0.5x LiteLLM's at equal N", cpu_vs_litellm, ws),
        ("text turn p50 ≤ 0.5x LiteLLM", text_vs_litellm(0.5), ws),
        ("text turn p50 ≤ 2.5x direct", text_p50(2.5), ws),
        ("20 parallel sessions: turns/s ≥ 2x LiteLLM", parallel, ws),
        ("audio reply p50 ≤ 0.6x LiteLLM", reply_vs("litellm", 0.6), ws),
        ("audio reply p50 ≤ 1.5x direct", reply_vs("direct", 1.5), ws),
        ("audio sessions per core ≥ 85 % of the bare forwarder's", vs_bare(0.85), tws),
        ("text turn p50 ≤ LiteLLM's", text_vs_litellm(1.0), tws),
        ("audio sessions per core ≥ LiteLLM's", vs_litellm(1.0), tws),
        ("relay ÷ bare forwarder ≥ 0.9 (audio sessions per core)", vs_bare(0.9), None),
        ("connect → session.created p50 < 1.2 ms", connect_latency, None),
        ("RSS < 60 MiB after start", rss_start, None),
        (f"RSS < 24 KiB per idle session at {IDLE_SESSIONS:,} idle sessions", rss_idle, None),
        ("2 workers on 2 cores carry ≥ 1.8x one worker's sessions", scale_out, None),
    ]
    table = Table("Targets", ["target", "server", "figures", "result"])
    data: list[dict[str, Any]] = []
    for name, check, transports in checks:
        for label in relays:
            if transports is not None and not label.endswith(transports):
                continue
            figures, met = check(label)
            verdict = "met" if met else ("**not met**" if met is False else "not measured")
            table.rows.append([name, label, figures, verdict])
            data.append({"target": name, "server": label, "figures": figures, "met": met})
    met = sum(1 for d in data if d["met"])
    return ScenarioResult(
        name="targets",
        title="Targets",
        description=f"{met} of {len(data)} met. Ratios compare p50s unless the target says p99; text latency is "
                    "send → `response.done`. Details in each scenario's section below.",
        tables=[table],
        data={"checks": data},
    )
