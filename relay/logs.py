"""Logging: one JSON object per line (the default when stderr is not a terminal) or plain text, and the session a
line belongs to.

A session's handler sets `SESSION` before its tasks start, and trio copies the context into every task a nursery
starts, so each line logged on behalf of a session carries its id and model without being passed around.  Lines
never carry keys, tokens, audio or user text: messages name ids, sizes and reasons only (the translator logs
user text at DEBUG level at most).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

# {"session": id, "model": relay model name, "key": client key name (once keys have names)}
SESSION: ContextVar[dict[str, Any] | None] = ContextVar("relay_session", default=None)
FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", process fields..., session fields..., extra fields...}` on one
    line; process fields (the worker number under `serve --workers N`) are on every line."""

    def __init__(self, fields: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._fields = fields or {}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self._fields,
        }
        context = SESSION.get()
        if context:
            out.update(context)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def default_format() -> str:
    return "text" if sys.stderr.isatty() else "json"


def configure(level: str, fmt: str, worker: int | None = None) -> None:
    """Root logging to stderr at `level` in `fmt` (json or text); a worker's lines name it."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(None if worker is None else {"worker": worker}))
    else:
        where = "" if worker is None else f" [worker {worker}]"
        handler.setFormatter(logging.Formatter(TEXT_FORMAT.replace(" %(name)s", where + " %(name)s")))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
