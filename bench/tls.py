"""Scenario "tls": what TLS on the upstream hop costs the relay, per transport.

For each relay transport two relays run: one whose upstream is the lab's emulator over ws://, and one whose
upstream is a second emulator over wss:// (a self-signed certificate for 127.0.0.1, made for the run and trusted
by that relay through SSL_CERT_FILE, which `ssl.create_default_context()` reads in both transports' clients). They
take turns, every round swapping which goes first: TEXT_SESSIONS sessions each of TURNS sequential text turns (the
text scenario's client), then PHASES phases each of SESSIONS full-duplex audio sessions for SECONDS (the audio
scenario's phase). The clients reach both relays over ws://: only the relay → emulator hop differs, as
in production, where the relay speaks TLS to Google and a load balancer usually terminates the clients' TLS.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import math
import socket
import ssl
import statistics
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from bench.audio_phase import PhaseSpec, healthy, run_phase
from bench.common import Context, fmt_ratio, ratio, run_jobs
from bench.dialects import Endpoint
from bench.report import ScenarioResult, Table, fmt, percentiles
from bench.servers import Server, Target, Upstream
from bench.text import TEXT
from bench.turns_client import TurnsJob, turns_job

NAME = "tls"
HELP = "TLS cost on the relay → upstream hop: text turns and audio sessions over ws:// vs wss://, per transport"
SCHEMES = ("ws", "wss")
# The figures compared, as (part, key) of a scheme's results and the digits shown: the table's columns in order.
_COMPARED = (
    ("text", "p50_ms", 2), ("text", "p99_ms", 2), ("text", "cpu_us_per_turn", 0), ("audio", "p50_ms", 2),
    ("audio", "p99_ms", 2), ("audio", "cpu_us_per_chunk", 0), ("audio", "server_cpu_percent", 0),
    ("audio", "emulator_cpu_percent", 0),
)
_FOREIGN_LOAD = 5.0  # % of the relay's core used by anything else: the machine is not idle


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--turns", type=int, default=200, help="sequential text turns per session (default: 200)")
    # Text turns cost a few ms each, and a session's CPU per turn varies by ±20 % from one session to the next
    # (more than TLS adds): more sessions, cheaply.
    parser.add_argument("--text-sessions", type=int, default=6,
                        help="text sessions per upstream scheme, one after the other (default: 6)")
    parser.add_argument("--phases", type=int, default=2, help="audio phases per upstream scheme (default: 2)")
    # 20, not 40: trio-websocket's relay carried 37 audio sessions per core in the audio scenario, so at 40 the
    # latencies would measure a saturated core rather than what TLS adds to a message.
    parser.add_argument("--sessions", type=int, default=20, help="full-duplex audio sessions (default: 20)")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio streaming time per phase (default: 4)")
    parser.add_argument("--grace", type=float, default=1.0,
                        help="seconds to wait for outstanding echoes after the last send (default: 1)")
    parser.add_argument("--per-generator", type=int, default=100, metavar="M",
                        help="audio sessions per load generator process (default: 100)")


def generators(args: argparse.Namespace) -> int:
    """Load generator processes the audio phase wants."""
    return math.ceil(args.sessions / args.per_generator)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1 and its key, as PEM files in `directory`: (cert, key)."""
    # Imported here: only this scenario needs it (it comes with google-auth, a dependency of the relay).
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls-cert.pem", directory / "tls-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _negotiated(upstream: Upstream) -> str:
    """The TLS version and cipher a default client context gets from the wss:// emulator (what the relay gets)."""
    assert upstream.cert is not None
    context = ssl.create_default_context(cafile=str(upstream.cert))
    try:
        with socket.create_connection(("127.0.0.1", upstream.child.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                cipher = tls.cipher()
                return f"{tls.version()} {cipher[0]}" if cipher else str(tls.version())
    except (OSError, ssl.SSLError) as exc:
        return f"unknown ({type(exc).__name__}: {exc})"


def _turns(ctx: Context, endpoint: Endpoint, server: Server, turns: int) -> dict[str, Any]:
    """One session of `turns` sequential text turns (the text scenario's client): raw times and the relay's CPU."""
    timed = run_jobs(ctx, turns_job, [TurnsJob(endpoint, "text", TEXT, sessions=1, turns=turns)], server)
    result = timed.results[0]
    return {"done": np.frombuffer(result["record"]["done"], dtype=np.float64), "cpu_s": timed.server_cpu_s,
            "errors": result["errors"], "error_count": result["error_count"]}


def _text(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """A scheme's text sessions pooled: every turn's time, and the relay's CPU over all of them."""
    done = np.concatenate([b["done"] for b in blocks])
    cpu = [b["cpu_s"] for b in blocks]
    times = percentiles(done)
    return {
        "turns": len(done),
        "p50_ms": times["p50"],
        "p99_ms": times["p99"],
        "max_ms": times["max"],
        "cpu_us_per_turn": sum(cpu) / len(done) * 1e6 if len(done) and None not in cpu else None,
        "errors": [e for b in blocks for e in b["errors"]][:5],
        "error_count": sum(b["error_count"] for b in blocks),
    }


def _mean(values: list[Any]) -> float | None:
    return None if not values or None in values else statistics.fmean(values)


def _audio(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """A scheme's audio phases: the means of their figures (same length, same load), the problems summed."""
    others = [p["server_core_other_percent"] for p in phases if p["server_core_other_percent"] is not None]
    return {
        "p50_ms": _mean([p["latency_ms"]["p50"] for p in phases]),
        "p99_ms": _mean([p["latency_ms"]["p99"] for p in phases]),
        "cpu_us_per_chunk": _mean([p["server_cpu_us_per_chunk"] for p in phases]),
        "server_cpu_percent": _mean([p["server_cpu_percent"] for p in phases]),
        "emulator_cpu_percent": _mean([p["upstream_cpu_percent"] for p in phases]),
        "dropped": sum(p["dropped"] for p in phases),
        "error_count": sum(p["error_count"] + p["foreign"] + p["corrupted"] for p in phases),
        "healthy": all(healthy(p) for p in phases),
        "errors": [e for p in phases for e in p["errors"]][:5],
        "server_core_other_percent_max": max(others, default=None),
        "phases": phases,
    }


def _orders(rounds: int) -> list[tuple[str, ...]]:
    """ws then wss, wss then ws, ...: the order of each round."""
    return [SCHEMES if r % 2 == 0 else SCHEMES[::-1] for r in range(rounds)]


def _measure(ctx: Context, target: Target, upstreams: dict[str, Upstream], args: argparse.Namespace) -> dict[str, Any]:
    """Both relays of `target` (upstream over ws:// and over wss://) run at once, measured in turn, and each round
    swaps which goes first (ws wss, wss ws, ...): a drift in how fast the machine is falls on both alike. The one
    not being measured is idle, with no sessions, and costs its core nothing."""
    spec = PhaseSpec(args.seconds, args.grace, args.per_generator)
    with ExitStack() as stack:
        servers = {scheme: stack.enter_context(ctx.lab.serve(target, up)) for scheme, up in upstreams.items()}
        endpoints = {s: attrs.evolve(server.endpoint, label=f"{target.label} {s}") for s, server in servers.items()}
        blocks: dict[str, list[dict[str, Any]]] = {s: [] for s in SCHEMES}
        phases: dict[str, list[dict[str, Any]]] = {s: [] for s in SCHEMES}
        ctx.progress(f"tls: {target.label}: {args.text_sessions} sessions x {args.turns} text turns per scheme")
        for order in _orders(args.text_sessions):
            for scheme in order:
                blocks[scheme].append(_turns(ctx, endpoints[scheme], servers[scheme], args.turns))
        for number, order in enumerate(_orders(args.phases)):
            ctx.progress(f"tls: {target.label}: audio round {number + 1}/{args.phases}: {args.sessions} sessions x "
                         f"{args.seconds:g} s, {' then '.join(order)}")
            for scheme in order:
                server, upstream = servers[scheme], upstreams[scheme]
                phases[scheme].append(run_phase(ctx, endpoints[scheme], server.pid, args.sessions, spec,
                                                upstream_pid=upstream.child.pid))
                ctx.lab.check_alive(server.child, upstream.child)
    runs: dict[str, Any] = {s: {"text": _text(blocks[s]), "audio": _audio(phases[s])} for s in SCHEMES}
    runs["overhead"] = _overhead(runs["ws"], runs["wss"])
    return runs


def _overhead(ws: dict[str, Any], wss: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """wss - ws and wss / ws of each compared figure."""
    out = {}
    for part, name, _ in _COMPARED:
        a, b = ws[part][name], wss[part][name]
        out[f"{part}.{name}"] = {"added": b - a if a is not None and b is not None else None, "ratio": ratio(b, a)}
    return out


def run(args: argparse.Namespace, ctx: Context) -> ScenarioResult:
    if min(args.turns, args.text_sessions, args.phases, args.sessions, args.per_generator) < 1 or args.seconds <= 0:
        raise ValueError("--turns, --text-sessions, --phases, --sessions, --per-generator and --seconds must be "
                         "positive")
    cert, key = self_signed(ctx.lab.logdir)
    secure = ctx.lab.start_emulator("emulator-tls", tls=(cert, key))
    try:
        upstreams = {"ws": ctx.lab.upstream, "wss": Upstream(secure, cert)}
        negotiated = _negotiated(upstreams["wss"])
        transports: dict[str, dict[str, Any]] = {}
        for transport in ctx.lab.relay_transports:
            target = Target("relay", transport)
            try:
                transports[target.label] = _measure(ctx, target, upstreams, args)
            except Exception as exc:  # reported, not fatal: the other transport still gives its figures
                reason = f"{type(exc).__name__}: {exc}".strip()
                ctx.progress(f"tls: {target.label} FAILED: {reason}")
                ctx.reset_pool()
                transports[target.label] = {"failed": reason[-1500:]}
                ctx.failures.append(f"{NAME}: {target.label}")
    finally:
        secure.stop()
    return _result(args, transports, negotiated, ctx.lab.emulator_transport)


def _added(o: dict[str, float | None], digits: int) -> str:
    if o["added"] is None:
        return "n/a"
    return f"{o['added']:+.{digits}f} ({fmt_ratio(o['ratio'])})"


def _result(
    args: argparse.Namespace, transports: dict[str, dict[str, Any]], negotiated: str, emulator_transport: str
) -> ScenarioResult:
    table = Table(
        f"Relay upstream over ws:// and wss://: {args.text_sessions} sessions x {args.turns} sequential text turns "
        f"and {args.phases} phases of {args.sessions} audio sessions x {args.seconds:g} s per scheme",
        ["relay", "upstream", "turn p50 ms", "turn p99 ms", "CPU µs/turn", "chunk p50 ms", "chunk p99 ms",
         "CPU µs/chunk", "relay CPU % (audio)", "emulator CPU % (audio)", "dropped"],
    )
    notes = []
    for label, runs in transports.items():
        if "failed" in runs:
            table.rows.append([label, "failed: " + runs["failed"].splitlines()[0][:150],
                               *["—"] * (len(table.columns) - 2)])
            continue
        for scheme in SCHEMES:
            p = runs[scheme]
            table.rows.append([label, f"{scheme}://", *(fmt(p[part][key], d) for part, key, d in _COMPARED),
                               str(p["audio"]["dropped"])])
            t, a = p["text"], p["audio"]
            if t["error_count"]:
                notes.append(f"WARNING {label} {scheme}: {t['error_count']} failed turns, e.g. "
                             f"{'; '.join(t['errors'][:2])}")
            if not a["healthy"]:
                notes.append(f"WARNING {label} {scheme}: audio: {a['dropped']} chunks dropped, {a['error_count']} "
                             f"client errors (or chunks altered), e.g. {'; '.join(a['errors'][:2])}")
            other = a["server_core_other_percent_max"]
            if other is not None and other > _FOREIGN_LOAD:
                notes.append(f"WARNING {label} {scheme}: other processes used up to {other:.0f} % of the relay's "
                             "CPU during the audio phases: the machine was not idle")
        o = runs["overhead"]
        table.rows.append([label, "**TLS cost**", *(_added(o[f"{part}.{key}"], d) for part, key, d in _COMPARED), "—"])
    notes += [
        "Only the relay → emulator hop differs: the clients speak ws:// to the relay both times. That is the "
        "production shape: the relay speaks TLS to Google, and the clients' TLS usually ends at a load balancer "
        "in front of the relay.",
        f"wss://: a self-signed P-256 certificate for 127.0.0.1 made for the run; the relay trusts it through "
        f"SSL_CERT_FILE (read by `ssl.create_default_context()`, which both transports' clients use) and verifies "
        f"it as it would Google's. Negotiated: {negotiated}. Both emulators serve over {emulator_transport}.",
        "TLS cost = wss:// figure - ws:// figure (and wss / ws). Per transport both relays run at once (the idle "
        "one costs nothing) and take turns, each round swapping which goes first, so a drift in the machine's "
        "speed falls on both; still, on a shared VM figures move by ±20 % between runs (p99s most): read a cost "
        "within that as noise, and repeat the run before reading much into one figure.",
        "The upstream connect (TCP, TLS handshake, WebSocket upgrade) happens before the clock starts: one "
        "unmeasured text turn and one warm-up audio chunk per session. These figures are the per-message cost of "
        "TLS (record encryption and decryption), not the handshake's.",
        "Text: the text scenario's client, send → `response.done`, every turn of the scheme's sessions pooled; "
        "CPU µs/turn is the relay process's /proc CPU over them. Several sessions rather than one long one: the "
        "CPU per turn of one session differs from the next by up to ±20 %.",
        "Audio: the audio scenario's phase (20 ms pcm16 appends echoed by the emulator: each chunk crosses the "
        "TLS hop twice, encrypted up and decrypted back); p50, p99, CPU µs per chunk round trip and CPU % are the "
        "means of the scheme's phases. Emulator CPU is that of the emulator the "
        "relay streamed to (it pays for TLS too, on the load CPU).",
    ]
    return ScenarioResult(
        name=NAME,
        title="TLS on the upstream hop",
        description="What TLS to the upstream costs the relay: the same text turns and audio sessions with the relay "
                    "connecting to the emulator over ws:// and over wss://, per relay transport.",
        tables=[table],
        notes=notes,
        data={"params": {k: getattr(args, k) for k in ("turns", "text_sessions", "phases", "sessions", "seconds",
                                                        "grace",
                                                        "per_generator")},
              "negotiated": negotiated, "emulator_transport": emulator_transport, "transports": transports},
    )
