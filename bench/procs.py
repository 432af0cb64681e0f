"""Child processes, CPU pinning and /proc sampling.

Every server runs in its own process, as an operator would run it (`python -m relay ...`), so its CPU
and memory can be read from /proc without the load generators or the emulator mixed in; `servers`
says which children a run starts.
"""

from __future__ import annotations

import ctypes
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent  # the checkout: `python -m bench.bare` is found from it
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 5.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


@attrs.frozen
class Pinning:
    """Which CPUs the relay and everything else (emulator, load generators, coordinator) run on."""

    relay: frozenset[int] | None
    others: frozenset[int] | None
    note: str

    @property
    def active(self) -> bool:
        return self.relay is not None


def plan_pinning() -> Pinning:
    """The relay gets the first usable CPU to itself, so its CPU figure is per core; the rest share the others."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError) as exc:  # not Linux
        return Pinning(None, None, f"not pinned: sched_getaffinity unavailable ({exc})")
    if len(cpus) < 2:
        return Pinning(None, None, f"not pinned: only {len(cpus)} usable CPU; relay shares it with the load")
    relay = frozenset(cpus[:1])
    others = frozenset(cpus[1:])
    return Pinning(relay, others, f"relay pinned to CPU {cpus[0]}; emulator and load generators to CPU "
                                  f"{','.join(map(str, sorted(others)))}")


def pin(pid: int, cpus: frozenset[int] | None) -> str | None:
    """Pin every thread of `pid` (threads that already exist do not inherit a later mask); None or an error."""
    if cpus is None:
        return None
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")] if pid else [0]
    except OSError:
        tids = [pid]
    try:
        for tid in tids:
            os.sched_setaffinity(tid, cpus)
    except OSError as exc:
        return f"pinning pid {pid} failed: {exc}"
    return None


@attrs.frozen
class ProcSample:
    """CPU seconds (user + system) and resident memory of a process at one moment."""

    at: float
    cpu_s: float
    rss_kib: int
    #: Voluntary context switches of the main thread: each is a wait in epoll, i.e. one wake-up of the event loop.
    wakeups: int = 0


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (the state is [0], the parent [1], the start time
    [19]), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    return stat[stat.rindex(b")") + 2 :].split()


def descendants(pid: int) -> dict[int, int]:
    """Every process below `pid` (children, theirs, ...) with its start time: with the start time a pid reused by
    an unrelated process later is not mistaken for one of them."""
    parents: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and fields[0] != b"Z":
                parents[int(entry)] = (int(fields[1]), int(fields[19]))
    found: dict[int, int] = {}
    below = {pid}
    while below:
        below = {p for p, (parent, _) in parents.items() if parent in below and p not in found}
        found.update((p, parents[p][1]) for p in below)
    return found


def same_process(pid: int, start: int) -> bool:
    """`pid` still runs, and is the process that started at `start` (not a later one given the same pid)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != b"Z" and int(fields[19]) == start


def sample(pid: int) -> ProcSample:
    """Read /proc/<pid>/stat (utime, stime) and /proc/<pid>/status (VmRSS, voluntary_ctxt_switches)."""
    now = time.monotonic()
    fields = _stat(pid)
    if fields is None:
        raise ProcessLookupError(f"process {pid} has gone")
    cpu_s = (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime
    rss = wakeups = 0
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith(b"voluntary_ctxt_switches:"):
                wakeups = int(line.split()[1])
    return ProcSample(now, cpu_s, rss, wakeups)


def cpu_percent(start: ProcSample, end: ProcSample) -> float:
    wall = end.at - start.at
    return 100.0 * (end.cpu_s - start.cpu_s) / wall if wall > 0 else 0.0


@attrs.frozen
class CpuTime:
    """Jiffies of one CPU from /proc/stat, in the groups the benchmark tells apart."""

    tasks: int  # user + nice + system: processes, ours or anyone's
    interrupts: int  # irq + softirq: on loopback mostly the packet work of our own sockets, charged to no process
    steal: int  # the hypervisor ran something else: competition just like another process
    total: int


CpuTimes = dict[int, CpuTime]


def cpu_times() -> CpuTimes:
    """Per-CPU times from /proc/stat (guest time is already part of user)."""
    times: CpuTimes = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit():
                    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
                    total = user + nice + system + idle + iowait + irq + softirq + steal
                    times[int(name[3:])] = CpuTime(user + nice + system, irq + softirq, steal, total)
    except OSError:
        pass
    return times


_ALL_BUSY = ("tasks", "interrupts", "steal")
LOAD_SATURATED = 90.0  # % busy: load CPUs this busy queue the clients' and the upstream's work


def busy_percent(
    start: CpuTimes, end: CpuTimes, cpus: frozenset[int] | None, parts: tuple[str, ...] = _ALL_BUSY
) -> float | None:
    """How busy `cpus` were on average between two `cpu_times()`, in % (100 = all of them all the time),
    counting the named parts of CpuTime."""
    if not cpus:
        return None
    busy = total = 0
    for cpu in cpus:
        if cpu in start and cpu in end:
            busy += sum(getattr(end[cpu], part) - getattr(start[cpu], part) for part in parts)
            total += end[cpu].total - start[cpu].total
    return 100.0 * busy / total if total else None


def raise_nofile() -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit (an idle benchmark holds thousands of
    sockets); returns (soft, hard) afterwards. The hard limit is the OS's cap: only root could raise it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _child_setup() -> None:
    """In the child before exec: get SIGTERM when the coordinator dies, so a crashed run leaves no servers behind,
    and lift the open-files limit, so a server can hold as many sessions as the idle scenario opens."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the coordinator's own cleanup still stops the children
    raise_nofile()


class Child:
    """A server child (`python -m relay ...`, the bare forwarder, LiteLLM) whose stdout and stderr go to a log
    file, read for its ready line."""

    def __init__(
        self, name: str, argv: list[str], ready: re.Pattern[str], env: dict[str, str], logdir: Path
    ) -> None:
        self.name = name
        self.log_path = logdir / f"{name.replace(' ', '-')}.log"
        self._log = open(self.log_path, "wb")  # closed in stop()
        # A file, not a pipe: nobody has to keep draining it, so a chatty child can never block on a full pipe.
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_child_setup,
        )
        self._ready = ready
        self.port = 0
        #: Processes it started (relay workers), by pid, with their start times: see adopt() and stop().
        self.tree: dict[int, int] = {}

    @classmethod
    def relay_module(
        cls, name: str, args: list[str], ready: re.Pattern[str], env: dict[str, str], logdir: Path
    ) -> Child:
        """`python -m <args...>` with this interpreter; `bench.*` modules are found from any working directory."""
        path = env.get("PYTHONPATH")
        env = {**env, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}
        return cls(name, [sys.executable, "-m", *args], ready, env, logdir)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> int:
        """Block until the child announces its port; raise with its log if it exits or takes too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = self._ready.search(self.log_path.read_text(errors="replace"))
            if match:
                self.port = int(match.group(1))
                return self.port
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start (exit {self.proc.poll()}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def adopt(self) -> dict[int, int]:
        """Note the processes it has started so far (pid: start time), so stop() ends them too even once they are
        no longer its children; returns them."""
        if self.proc.poll() is None:
            self.tree.update(descendants(self.pid))
        return self.tree

    def stop(self) -> None:
        """SIGTERM, then kill; then every process it started that is still running is killed too.  Not SIGINT: the
        relay takes its full close timeout (5 s) to end a session whose upstream socket is still open, and a
        benchmark child has nothing worth a graceful shutdown.  The tree matters for `serve --workers`: the workers
        run in sessions of their own, so no signal to the supervisor's group reaches them, and a supervisor that
        had to be killed leaves them serving (they notice within a second, then drain for up to the drain timeout),
        holding CPU and the port while the next measurement runs."""
        self.adopt()  # before the signal: once it exits, its children are no longer found from it
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # A supervisor that exited by itself waited for its workers; these are what a kill or a crash left behind.
        for pid, start in self.tree.items():
            if same_process(pid, start):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + _STOP_TIMEOUT
        while any(same_process(pid, start) for pid, start in self.tree.items()) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._log.close()
