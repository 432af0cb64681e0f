"""What every scenario gets (`Context`) and the helpers they share: the paths to measure, timed runs of load
generator jobs with the server's CPU and memory sampled around them, and ratio formatting."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs

from bench.dialects import Endpoint
from bench.loadgen import GeneratorPool, Job
from bench.procs import CpuTimes, Pinning, ProcSample, busy_percent, cpu_percent, cpu_times, sample
from bench.servers import Lab, Server, Target


@attrs.define
class Context:
    """One run: the emulator and the servers (`lab`), the load generators (`pool`), and what is known about the
    LiteLLM peer (`peer_error` says why it is missing when it was asked for)."""

    lab: Lab
    pool: GeneratorPool
    pinning: Pinning
    peer_requested: bool = False
    peer_error: str | None = None
    #: Paths of the relay (or bare forwarder) that failed: the run reports them and exits non-zero.
    failures: list[str] = attrs.Factory(list)

    def progress(self, message: str) -> None:
        print(f"relay bench: {message}", file=sys.stderr, flush=True)

    def reset_pool(self) -> None:
        """New load generators after a failed job: the others may still be mid-job or waiting for a go signal,
        and would answer the next job out of turn."""
        size = self.pool.size
        self.pool.close()
        self.pool = GeneratorPool(size, self.pinning.others)


@attrs.define
class Subject:
    """A path being measured: the direct floor (no server under test) or a server under test."""

    label: str
    endpoint: Endpoint
    server: Server | None = None

    @property
    def kind(self) -> str:
        return self.server.target.kind if self.server is not None else "direct"


@contextmanager
def subject(ctx: Context, target: Target | None) -> Iterator[Subject]:
    """The direct floor (target None), or `target` started for the duration of the block."""
    if target is None:
        yield Subject("direct", ctx.lab.direct)
        return
    with ctx.lab.serve(target) as server:
        yield Subject(target.label, server.endpoint, server)


def targets(ctx: Context, kinds: tuple[str, ...] = ("relay", "litellm"), direct: bool = True) -> list[Target | None]:
    """Direct first (None), then the servers under test of those kinds."""
    return ([None] if direct else []) + list(ctx.lab.targets(kinds))


def each_path(
    ctx: Context,
    scenario: str,
    measure: Callable[[Subject], dict[str, Any]],
    kinds: tuple[str, ...] = ("relay", "litellm"),
    direct: bool = True,
) -> dict[str, dict[str, Any]]:
    """`measure` each path in report order; a server under test that fails is reported, not fatal, so the
    other figures still come out (and LiteLLM failing is just what it did)."""
    out: dict[str, dict[str, Any]] = {}
    for target in targets(ctx, kinds, direct):
        label = target.label if target is not None else "direct"
        try:
            with subject(ctx, target) as s:
                out[label] = {"kind": s.kind, **measure(s)}
        except Exception as exc:
            if target is None:
                raise
            reason = f"{type(exc).__name__}: {exc}".strip()
            ctx.progress(f"{scenario}: {label} FAILED: {reason}")
            ctx.reset_pool()
            out[label] = {"kind": target.kind, "failed": reason[-1500:]}
            if target.kind != "litellm":
                ctx.failures.append(f"{scenario}: {label}")
    return out


def peer_result(paths: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """LiteLLM's figures for a scenario, or None when it was not run or failed."""
    litellm = paths.get("litellm")
    return litellm if litellm is not None and "failed" not in litellm else None


def failed_rows(paths: dict[str, dict[str, Any]], width: int) -> list[list[str]]:
    """Table rows for paths that failed: the label and the reason's first line."""
    rows = []
    for label, p in paths.items():
        if "failed" in p:
            rows.append([label, "failed: " + p["failed"].splitlines()[0][:150], *["—"] * (width - 2)])
    return rows


def peer_notes(ctx: Context, paths: dict[str, dict[str, Any]]) -> list[str]:
    """What happened to LiteLLM, when it was asked for and gave no figures."""
    if not ctx.peer_requested:
        return []
    if ctx.peer_error is not None:
        return [f"LiteLLM: not measured: {ctx.peer_error}"]
    failed = paths.get("litellm", {}).get("failed")
    return [f"LiteLLM: failed: {failed}"] if failed else []


@attrs.define
class Timed:
    """Load generator results and the server's CPU seconds and RSS over the window they ran in."""

    results: list[dict[str, Any]]
    wall_s: float
    server_cpu_s: float | None = None
    server_cpu_percent: float | None = None
    rss_at_start_kib: int | None = None  # when every generator was ready (their sessions open)
    rss_peak_kib: int | None = None
    upstream_cpu_percent: float | None = None  # the lab's upstream over the same window
    load_cores_busy_percent: float | None = None  # the load CPUs (upstream, generators, anything else) likewise


def run_jobs(
    ctx: Context,
    job: Job,
    params: Sequence[Any],
    server: Server | None,
    *,
    timeout: float = 300.0,
    on_start: Callable[[float], None] | None = None,
) -> Timed:
    """Run `job` on the generators; sample the server, the upstream and the load CPUs from the go signal to the last
    result."""
    marks: dict[str, ProcSample] = {}
    cpus: dict[str, CpuTimes] = {}
    upstream = ctx.lab.upstream_child.pid if ctx.lab.upstream_child is not None else None
    peak = [0]

    def started(start_at: float) -> None:
        cpus["start"] = cpu_times()
        if upstream is not None:
            marks["upstream"] = sample(upstream)
        if server is not None:
            marks["start"] = sample(server.pid)
            peak[0] = marks["start"].rss_kib
        if on_start is not None:
            on_start(start_at)

    def poll() -> None:
        if server is not None and "start" in marks:
            peak[0] = max(peak[0], sample(server.pid).rss_kib)

    t0 = time.monotonic()
    results = ctx.pool.run(job, params, on_start=started, poll=poll, timeout=timeout)
    timed = Timed(results, time.monotonic() - t0)
    if "start" in cpus:
        timed.load_cores_busy_percent = busy_percent(cpus["start"], cpu_times(), ctx.pinning.others)
    if upstream is not None and "upstream" in marks:
        timed.upstream_cpu_percent = cpu_percent(marks["upstream"], sample(upstream))
    if server is not None and "start" in marks:
        end = sample(server.pid)
        timed.server_cpu_s = end.cpu_s - marks["start"].cpu_s
        timed.server_cpu_percent = cpu_percent(marks["start"], end)
        timed.rss_at_start_kib = marks["start"].rss_kib
        timed.rss_peak_kib = max(peak[0], end.rss_kib)
    return timed


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def mib(kib: float | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f}"
