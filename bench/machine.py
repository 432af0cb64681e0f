"""Facts about the machine and the software, recorded with every result so runs can be compared."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("trio", "trio-websocket", "wsproto", "websockets", "orjson")
_REPO = Path(__file__).resolve().parents[1]  # the checkout: bench/ sits at its top


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    try:
        import websockets.speedups  # noqa: F401

        found["websockets"] += " (C speedups)"
    except ImportError:
        found["websockets"] += " (no C speedups)"
    return found


def git_commit() -> str:
    """Short HEAD, with "+dirty" when tracked files differ from it: a result is only as good as its source."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=_REPO, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_REPO, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + ("+dirty" if dirty else "")


def wakeup_lateness(count: int = 50, interval: float = 0.02) -> dict[str, float]:
    """How late `time.sleep` wakes up on an idle CPU, in ms: a floor under every latency measured here.

    On virtual machines an idle vCPU is descheduled by the hypervisor, and waking it can take milliseconds.
    The interval is the audio chunk period, the gap a lightly loaded process sleeps through.
    """
    late = []
    for _ in range(count):
        due = time.monotonic() + interval
        time.sleep(interval)
        late.append(time.monotonic() - due)
    late.sort()
    return {"p50": late[len(late) // 2] * 1000, "p99": late[int(len(late) * 0.99)] * 1000, "max": late[-1] * 1000}


def facts() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory": memory_total(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "packages": versions(),
        "git": git_commit(),
    }
