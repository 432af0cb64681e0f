"""What the emulator's sessions share: the connections' records and the resumable logical sessions.

A *logical session* is one conversation. It starts with a setup without a resumption handle and
lives on through every connection that resumes it, each one taking over its history. Sessions
(``session.py``) only see this class; ``Emulator`` (``server.py``) is one, so tests read the same
attributes on the emulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import trio

from .wire import INTERNAL_ERROR, ProtocolError

if TYPE_CHECKING:
    from .setup import SessionConfig

__all__ = ["SESSION_NOT_FOUND", "LogicalSession", "Registry"]

SESSION_NOT_FOUND = (1008, "BidiGenerateContent session not found.")


@attrs.define(eq=False)
class LogicalSession:
    """One conversation, across the connections that resume it."""

    id: str
    #: The live history of its newest connection (compression trims it in place).
    history: list[dict[str, Any]]
    #: The setup of its newest connection, as changed by ``contextUpdate``.
    config: SessionConfig | None = None
    #: Connections that have carried it so far: the ``c<k>`` of their handles.
    connections: int = 1
    #: Handles issued so far: the ``h<n>`` of the newest one.
    updates: int = 0
    #: Function calls made so far (numbering their ids).
    calls: int = 0
    #: A connection of it is open until its socket has ended on the emulator side; a resume
    #: meanwhile is refused, as Gemini does.
    open: bool = True
    #: The newest handle (the only valid one), the history it restores, and when it was issued.
    handle: str | None = None
    snapshot: list[dict[str, Any]] = attrs.Factory(list)
    issued_at: float = 0.0


class Registry:
    """Records of every connection, and the logical sessions with their resumption handles.

    ``received`` holds every parsed client message of every connection in arrival order,
    ``by_connection`` the same per connection (in the order they opened), ``connections`` counts
    accepted WebSocket connections, ``live`` those still open, ``compressions`` how often a
    context window was compressed, and ``handles_issued`` the resumption handles given out; tests
    read them.
    """

    def __init__(self, handle_ttl: float) -> None:
        self.received: list[dict[str, Any]] = []
        self.by_connection: list[list[dict[str, Any]]] = []
        self.connections = 0
        self.live = 0
        self.compressions = 0
        self.handles_issued = 0
        self._handle_ttl = handle_ttl
        self._sessions: dict[str, LogicalSession] = {}
        self._by_handle: dict[str, LogicalSession] = {}

    # -- connections ---------------------------------------------------------------------------

    def connection_opened(self) -> list[dict[str, Any]]:
        """Count a new connection; returns the list its received messages go to."""
        self.connections += 1
        self.live += 1
        received: list[dict[str, Any]] = []
        self.by_connection.append(received)
        return received

    def connection_closed(self, logical: LogicalSession | None) -> None:
        """The socket of a connection has ended (carrying ``logical``, if it got that far)."""
        self.live -= 1
        if logical is not None:
            logical.open = False

    # -- logical sessions ----------------------------------------------------------------------

    def start_session(self, history: list[dict[str, Any]]) -> LogicalSession:
        """A new logical session (ids ``emu-1``, ``emu-2``, ... in order) over ``history``."""
        logical = LogicalSession(f"emu-{len(self._sessions) + 1}", history)
        self._sessions[logical.id] = logical
        return logical

    def resume_session(self, handle: str) -> LogicalSession:
        """Take over the logical session of ``handle`` on a new connection, with the history that
        handle saved; 1008 if the handle is unknown, superseded or expired, 1011 while another
        connection of that session is still open."""
        logical = self._by_handle.get(handle)
        if logical is None or trio.current_time() - logical.issued_at > self._handle_ttl:
            raise ProtocolError.of(SESSION_NOT_FOUND)
        if logical.open:
            raise ProtocolError.of(INTERNAL_ERROR)
        logical.open = True
        logical.connections += 1
        logical.history = list(logical.snapshot)
        return logical

    def issue_handle(self, logical: LogicalSession, history: list[dict[str, Any]]) -> str:
        """A new handle that restores ``history``; it supersedes the session's older handles."""
        logical.updates += 1
        self.handles_issued += 1
        handle = f"{logical.id}-c{logical.connections}-h{logical.updates}"
        if logical.handle is not None:
            self._by_handle.pop(logical.handle, None)
        self._by_handle[handle] = logical
        logical.handle = handle
        logical.snapshot = list(history)
        logical.issued_at = trio.current_time()
        return handle

    def expire_handles(self) -> None:
        """Every handle issued so far stops working, as once ``handle_ttl`` has passed (for tests of the
        fallback to a fresh session)."""
        self._by_handle.clear()

    def session(self, session_id: str) -> LogicalSession:
        """The logical session ``session_id`` (``KeyError`` if there is none)."""
        return self._sessions[session_id]

    def session_ids(self) -> list[str]:
        """Every logical session's id, oldest first."""
        return list(self._sessions)

    def sessions_history(self, session_id: str) -> list[dict[str, Any]]:
        """A copy of the current history of logical session ``session_id``."""
        return list(self._sessions[session_id].history)
