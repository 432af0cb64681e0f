"""Errors the translator answers with an OpenAI `error` event (the session goes on)."""

from __future__ import annotations


class ClientError(Exception):
    """A client event the relay cannot accept; becomes `error{type: invalid_request_error}`."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def invalid_type(param: str, expected: str, got: object) -> ClientError:
    return ClientError(
        "invalid_type",
        f"Invalid type for '{param}': expected {expected}, but got {type(got).__name__}.",
        param,
    )


def invalid_value(param: str, got: object, allowed: list[str] | tuple[str, ...]) -> ClientError:
    supported = ", ".join(f"'{a}'" for a in allowed)
    return ClientError(
        "invalid_value", f"Invalid value: '{got}'. Supported values are: {supported}.", param
    )
