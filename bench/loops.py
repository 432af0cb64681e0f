"""The event loop of the load side (load generators and the echo upstream): uvloop when installed, else asyncio's.

uvloop is a benchmark-only dependency (the `bench` extra): its read and write paths cost the load CPU about
half of asyncio's per message. Without it the bench still runs, slower on the load side, and the report header
says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

try:
    import uvloop
except ImportError:
    uvloop = None


def name() -> str:
    """What the load side runs on, as the report header names it."""
    return f"uvloop {uvloop.__version__}" if uvloop is not None else "plain asyncio (uvloop not installed)"


def factory() -> Callable[[], asyncio.AbstractEventLoop]:
    return uvloop.new_event_loop if uvloop is not None else asyncio.new_event_loop
