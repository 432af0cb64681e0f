"""What both state machines (the conversation's `Translator`, the translation socket's `LiveTranslation`) do with a
client frame before its event: the size limit, JSON, and the `event_id` an `error` names; also the shell's own
refusals and the session's end at `max_session_seconds`."""

from __future__ import annotations

from relay import codec
from relay.errors import ClientError
from relay.translate.base import Close, Output


class ClientFrames:
    """Mixin: needs `_max_frame`, `oversized`, `_out`, `_take()`, `_error(...)` and `_client_data(data)`."""

    _max_frame: int
    oversized: int
    _out: Output

    def client_frame(self, frame: str | bytes) -> Output:
        event_id = None
        try:
            if len(frame) > self._max_frame:
                self.oversized += 1
                event_id = codec.event_id_in_head(frame)
                raise ClientError(
                    "message_too_large",
                    f"The event is {len(frame)} bytes; the limit is {self._max_frame} bytes.",
                )
            data = codec.parse_json(frame)
            event_id = codec.event_id_of(data)
            self._client_data(data)
        except ClientError as exc:
            self._error(exc.code, exc.message, exc.param, event_id)
        return self._take()

    def refuse_frame(self, frame: str | bytes, code: str, message: str) -> Output:
        """A client event the shell will not take (a limit it enforces): an `error` naming its event_id."""
        try:
            data = codec.parse_json(frame) if len(frame) <= self._max_frame else None
        except ClientError:
            data = None
        # a frame too large or broken to parse may still name its event_id near its start
        event_id = codec.event_id_of(data) if data is not None else codec.event_id_in_head(frame)
        self._error(code, message, event_id=event_id)
        return self._take()

    def session_expired(self, seconds: float) -> Output:
        """The session reached the relay's longest duration: an `error`, then the client is closed."""
        self._error("session_expired", f"Your session hit the maximum duration of {seconds:g} seconds.")
        self._out.close = Close(1000, "session expired")
        return self._take()
