"""Scenario "idle": memory of many open, idle sessions.

Per server: start it fresh (RSS at start), open SESSIONS sessions, each until its `session.created`, from
two load generators with up to 100 handshakes in flight each; with all open, RSS again; hold them, check
they are all still open, close them, and RSS once more after a short settle. RSS per session is
(RSS open - RSS before) / sessions. The relay opens its upstream only when a session needs the model, so an
idle relay session holds one socket; LiteLLM opens its upstream at connect, so each of its sessions also
holds an upstream connection (on the emulator's side too). Direct: the same sessions on the emulator itself
(`setup` → `setupComplete`), the memory of a Gemini-side session on the emulator's transport.

Every process raises its open-files soft limit to the hard limit (the servers through the benchmark's child
set-up, the generators themselves); when the hard limit is below what N sessions need, N is cut to fit and
the report says so.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import Context, Subject, each_path, failed_rows, mib, peer_notes
from bench.conn_client import IdleJob, idle_job
from bench.procs import raise_nofile, sample
from bench.report import ScenarioResult, Table, fmt

NAME = "idle"
HELP = "memory of N open idle sessions (default 10,000): server RSS before/after and per session"
_GENERATORS = 2
_CONCURRENCY = 100  # handshakes in flight per generator: far below the listen backlog
_SETTLE = 1.0
_FD_MARGIN = 200  # descriptors a process needs besides the sessions (its own files, pipes, listeners)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=10_000,
                        help="idle sessions per server (default: 10,000, the N of the idle-memory target)")
    parser.add_argument("--peer-sessions", type=int, default=None,
                        help="idle sessions for LiteLLM, which also holds an upstream socket per session "
                             "(default: --sessions, at most 5,000: two descriptors a session, and the open-files "
                             "limit is often 20,000)")
    parser.add_argument("--hold", type=float, default=2.0, help="seconds the sessions stay open (default: 2)")


def generators(args: argparse.Namespace) -> int:
    return _GENERATORS


def run(args: argparse.Namespace, ctx: Context) -> ScenarioResult:
    if args.peer_sessions is None:
        args.peer_sessions = min(args.sessions, 5000)
    if args.sessions < 1 or args.peer_sessions < 1 or args.hold < 0:
        raise ValueError("--sessions and --peer-sessions must be positive, --hold not negative")
    _, hard = raise_nofile()
    # Each session is one socket in a generator and one in the server (two in LiteLLM, and one more in the
    # emulator for each of those); generators hold their share each.
    cap = max(1, hard - _FD_MARGIN)
    notes: list[str] = []

    def sessions_for(kind: str) -> int:
        wanted = args.peer_sessions if kind == "litellm" else args.sessions
        per_socket = 2 if kind == "litellm" else 1
        fitting = min(wanted, cap // per_socket, cap * _GENERATORS)
        if fitting < wanted:
            note = f"{kind}: {fitting} sessions instead of {wanted}: the open-files hard limit is {hard}"
            if note not in notes:
                notes.append(note)
        return fitting

    def measure(s: Subject) -> dict[str, Any]:
        n = sessions_for(s.kind)
        assert ctx.lab.upstream_child is not None
        pid = s.server.pid if s.server is not None else ctx.lab.upstream_child.pid
        ctx.progress(f"idle: {s.label}: opening {n} sessions")
        start_kib = s.server.started.rss_kib if s.server is not None else None
        time.sleep(0.2)
        before = sample(pid)
        marks: dict[str, int] = {}

        def on_start(_: float) -> None:
            time.sleep(0.5 if n > 1000 else 0.1)  # the last sessions' set-up finishes in the server
            marks["open"] = sample(pid).rss_kib

        gens = min(_GENERATORS, n)
        jobs = [IdleJob(s.endpoint, n // gens + (1 if g < n % gens else 0), _CONCURRENCY, args.hold)
                for g in range(gens)]
        results = ctx.pool.run(idle_job, jobs, on_start=on_start, timeout=args.hold + 300)
        time.sleep(_SETTLE if n > 1000 else _SETTLE / 4)  # the server's teardown of the sessions
        closed = sample(pid)
        opened = sum(r["opened"] for r in results)
        errors = [e for r in results for e in r["errors"]]
        return {
            "sessions": n,
            "opened": opened,
            "alive_after_hold": sum(r["alive_after_hold"] for r in results),
            "open_s": max(r["open_s"] for r in results),
            "rss_start_kib": start_kib,
            "rss_before_kib": before.rss_kib,
            "rss_open_kib": marks.get("open"),
            "rss_after_close_kib": closed.rss_kib,
            "kib_per_session": (marks["open"] - before.rss_kib) / opened if opened and "open" in marks else None,
            "error_count": sum(r["error_count"] for r in results),
            "errors": errors[:5],
            "generator_nofile": results[0]["nofile"],
        }

    paths = each_path(ctx, NAME, measure)
    return _result(args, paths, ctx, notes, hard)


def _result(
    args: argparse.Namespace, paths: dict[str, dict[str, Any]], ctx: Context, notes: list[str], hard: int
) -> ScenarioResult:
    table = Table(
        "Idle sessions: server RSS (MiB)",
        ["path", "sessions", "opened", "still open after hold", "open time s", "RSS at start", "RSS before",
         "RSS with all open", "RSS after close", "**KiB per session**"],
    )
    for label, p in paths.items():
        if "failed" in p:
            continue
        table.rows.append([
            label, str(p["sessions"]), str(p["opened"]), str(p["alive_after_hold"]), fmt(p["open_s"], 1),
            mib(p["rss_start_kib"]), mib(p["rss_before_kib"]), mib(p["rss_open_kib"]), mib(p["rss_after_close_kib"]),
            f"**{fmt(p['kib_per_session'], 1)}**",
        ])
        if p["error_count"]:
            notes.append(f"WARNING {label}: {p['error_count']} sessions failed to open, e.g. "
                         f"{'; '.join(p['errors'][:2])}")
        if p["alive_after_hold"] < p["opened"]:
            notes.append(f"WARNING {label}: {p['opened'] - p['alive_after_hold']} sessions were closed by the "
                         f"server during the {args.hold:g} s hold")
    table.rows += failed_rows(paths, len(table.columns))
    notes += peer_notes(ctx, paths)
    notes += [
        f"Open-files limit: soft raised to the hard limit, {hard}, in the servers and the load generators.",
        "RSS: /proc/<pid>/status VmRSS. Start = right after the server announced its port; before = just "
        "before the sessions open; with all open = 0.5 s after the last session was ready. Direct measures the "
        "emulator (started afresh for each scenario).",
        "Sessions are opened by two load generators, up to "
        f"{_CONCURRENCY} handshakes in flight each; open time is the slower generator's.",
    ]
    return ScenarioResult(
        name=NAME,
        title="Idle sessions",
        description="Memory held per open idle session (ready: `session.created`, or `setupComplete` direct).",
        tables=[table],
        notes=notes,
        data={"params": {"sessions": args.sessions, "peer_sessions": args.peer_sessions, "hold": args.hold,
                         "nofile_hard": hard}, "paths": paths},
    )

