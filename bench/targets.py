"""The Targets table of `bench all`: each performance target, per relay transport, met or not, with the figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench.common import fmt_ratio
from bench.report import ScenarioResult, Table, fmt
from bench.scale import TARGET_RATIO

# The transport whose sessions-per-core target is the higher one.
FAST_TRANSPORT = "websockets"

Check = tuple[str, bool | None]  # (figures, met: True / False / None = not measured)


def _paths(results: dict[str, ScenarioResult], scenario: str) -> dict[str, dict[str, Any]]:
    found = results.get(scenario)
    if found is None:
        return {}
    return found.data.get("paths") or found.data.get("servers") or {}


def _ok(p: dict[str, Any] | None) -> bool:
    return p is not None and "failed" not in p


def evaluate(results: Sequence[ScenarioResult], *, peer_requested: bool, peer_error: str | None) -> ScenarioResult:
    by = {r.name: r for r in results}
    text, reply = _paths(by, "text"), _paths(by, "audio-reply")
    idle, connect, audio = _paths(by, "idle"), _paths(by, "connect"), _paths(by, "audio")
    scale: dict[str, dict[str, Any]] = by["scale"].data.get("ratios", {}) if "scale" in by else {}
    relays = [label for label, p in {**text, **audio, **idle}.items() if p.get("kind") == "relay"] + list(scale)
    relays = list(dict.fromkeys(relays))
    no_peer = "not measured: " + (peer_error or "LiteLLM failed") if peer_requested else "not measured (--peer litellm)"
    litellm_text, litellm_audio = text.get("litellm"), audio.get("litellm")

    def text_p50(label: str) -> Check:
        p, d = text.get(label), text.get("direct")
        if not (_ok(p) and _ok(d)):
            return "no figures", None
        r = p["done_p50_vs_direct"]
        return (f"{fmt_ratio(r)}: {fmt(p['sequential']['done_ms']['p50'])} vs "
                f"{fmt(d['sequential']['done_ms']['p50'])} ms"), r is not None and r <= 1.5

    def text_vs_litellm(label: str) -> Check:
        p = text.get(label)
        if not (_ok(p) and _ok(litellm_text)):
            return no_peer, None
        r = p["done_p50_vs_litellm"]
        return (f"{fmt_ratio(r)}: {fmt(p['sequential']['done_ms']['p50'])} vs "
                f"{fmt(litellm_text['sequential']['done_ms']['p50'])} ms"), r is not None and r <= 0.5

    def text_p99(label: str) -> Check:
        p, d = text.get(label), text.get("direct")
        if not (_ok(p) and _ok(d)):
            return "no figures", None
        r = p["done_p99_vs_direct"]
        return (f"{fmt_ratio(r)}: {fmt(p['sequential']['done_ms']['p99'])} vs "
                f"{fmt(d['sequential']['done_ms']['p99'])} ms"), r is not None and r <= 3.0

    def audio_reply(label: str) -> Check:
        p, d = reply.get(label), reply.get("direct")
        if not (_ok(p) and _ok(d)):
            return "no figures", None
        r = p["done_p50_vs_direct"]
        return f"{fmt_ratio(r)}: {fmt(p['done_ms']['p50'])} vs {fmt(d['done_ms']['p50'])} ms", \
            r is not None and r <= 1.3

    def parallel(label: str) -> Check:
        p = text.get(label)
        if not (_ok(p) and _ok(litellm_text)):
            return no_peer, None
        r = p["turns_per_s_vs_litellm"]
        return (f"{fmt_ratio(r)}: {fmt(p['parallel']['turns_per_s'], 0)} vs "
                f"{fmt(litellm_text['parallel']['turns_per_s'], 0)} turns/s"), r is not None and r >= 2.0

    def sessions(label: str) -> Check:
        p = audio.get(label)
        if not _ok(p):
            return "no figures", None
        need = 120 if label.endswith(FAST_TRANSPORT) else 80
        return f"{p['max_sessions']} sessions ({p['limited_by']}); target {need}", p["max_sessions"] >= need

    def vs_bare(label: str) -> Check:
        p = audio.get(label)
        bare = audio.get(label.replace("relay", "bare", 1))
        if not (_ok(p) and _ok(bare)):
            return "no figures", None
        r = p.get("vs_bare")
        cpu = p.get("vs_bare_cpu")
        extra = f"; by CPU per chunk {fmt_ratio(cpu)}" if cpu is not None else ""
        return (f"{fmt_ratio(r)}: {p['max_sessions']} vs {bare['max_sessions']} bare "
                f"({bare['limited_by']}){extra}"), r is not None and r >= 0.8

    def vs_litellm(label: str) -> Check:
        p = audio.get(label)
        if not (_ok(p) and _ok(litellm_audio)):
            return no_peer, None
        r = p.get("vs_litellm")
        return f"{fmt_ratio(r)}: {p['max_sessions']} vs {litellm_audio['max_sessions']}", r is not None and r >= 3.0

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
            ms["p50"] < 1.0

    def rss_start(label: str) -> Check:
        p = idle.get(label)
        if not _ok(p) or p["rss_start_kib"] is None:
            return "no figures", None
        return f"{p['rss_start_kib'] / 1024:.1f} MiB", p["rss_start_kib"] < 60 * 1024

    def rss_idle(label: str) -> Check:
        p = idle.get(label)
        if not _ok(p) or p["kib_per_session"] is None:
            return "no figures", None
        return f"{p['kib_per_session']:.1f} KiB ({p['opened']} sessions)", p["kib_per_session"] < 64

    def rss_active(label: str) -> Check:
        p = audio.get(label)
        if not _ok(p) or p.get("kib_per_active_session") is None:
            return "no figures", None
        return f"{p['kib_per_active_session']:.0f} KiB (at {p['max_sessions']} sessions)", \
            p["kib_per_active_session"] < 256

    checks: list[tuple[str, Callable[[str], Check]]] = [
        ("text turn latency p50 ≤ 1.5x direct", text_p50),
        ("text turn latency p50 ≤ 0.5x LiteLLM", text_vs_litellm),
        ("text turn latency p99 ≤ 3x direct", text_p99),
        ("audio reply (send → response.done) ≤ 1.3x direct", audio_reply),
        ("20 parallel sessions: turns/s ≥ 2x LiteLLM", parallel),
        ("20 ms full-duplex audio sessions per core ≥ 120 (websockets) / ≥ 80 (trio-websocket)", sessions),
        ("audio sessions per core ≥ 80 % of the bare transport", vs_bare),
        ("audio sessions per core ≥ 3x LiteLLM", vs_litellm),
        ("2 workers on 2 cores carry ≥ 1.8x one worker's sessions", scale_out),
        ("connect → session.created < 1 ms", connect_latency),
        ("RSS < 60 MiB after start", rss_start),
        ("RSS < 64 KiB per idle connected session", rss_idle),
        ("RSS < 256 KiB per active session", rss_active),
    ]
    table = Table("Targets", ["target", "server", "figures", "result"])
    data: list[dict[str, Any]] = []
    for name, check in checks:
        for label in relays:
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
