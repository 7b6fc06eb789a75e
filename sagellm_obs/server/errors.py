"""HTTP errors in the OpenAI shape, carrying sageLLM protocol error codes.

Every error the server returns has the body OpenAI clients expect::

    {
        "error": {
            "message": "...",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": "invalid_argument",
        }
    }

``code`` is a protocol :class:`~sagellm_obs.protocol.ErrorCode` value, except for authentication
(``invalid_api_key``, as OpenAI sends it; the protocol has no such code). Messages name fields and
reasons only: request content (prompts, messages) is never echoed.
"""

from __future__ import annotations

import json
from typing import Any

from sagellm_obs.protocol import Error, ErrorCode, ProtocolValidationError

INVALID_REQUEST = "invalid_request_error"
"""OpenAI error type of every 4xx."""

SERVER_ERROR = "server_error"
"""OpenAI error type of every 5xx."""

CODE_INVALID_API_KEY = "invalid_api_key"
"""OpenAI's code for a missing or wrong API key (no protocol equivalent)."""


class APIError(Exception):
    """An error answered with an OpenAI-style body.

    Attributes:
        status: HTTP status code.
        message: Human-readable message (never contains request content).
        param: The offending request field, if one is to blame.
        code: A protocol ``ErrorCode`` value (or ``invalid_api_key``); default
            ``unavailable`` for 5xx, ``invalid_argument`` otherwise.
        type: OpenAI error type: ``invalid_request_error`` for 4xx, ``server_error`` for 5xx.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
    ) -> None:
        """Builds the error; ``code`` and ``type`` default from the status."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        default = ErrorCode.UNAVAILABLE if status >= 500 else ErrorCode.INVALID_ARGUMENT
        self.code = code or default.value
        self.type = type or (SERVER_ERROR if status >= 500 else INVALID_REQUEST)

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body_bytes(self) -> bytes:
        """The JSON body, encoded."""
        return json.dumps(self.body()).encode()


def invalid_argument(message: str, param: str | None = None, status: int = 400) -> APIError:
    """A 4xx with ``code="invalid_argument"``."""
    return APIError(status, message, param=param, code=ErrorCode.INVALID_ARGUMENT.value)


def from_validation(exc: ProtocolValidationError) -> APIError:
    """A 400 for a failed validation; ``param`` is the first bad field.

    The message lists every bad field with pydantic's reason; input values are never included
    (:class:`ProtocolValidationError` drops them).
    """
    parts = [f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in exc.errors]
    param = exc.field or None
    message = "; ".join(parts) or "invalid request"
    return APIError(400, message, param=param, code=exc.code.value)


def from_protocol_error(error: Error | None, status: int = 500) -> APIError:
    """A 5xx for an engine-side failure carried by a protocol ``Response.error``."""
    if error is None:
        return APIError(status, "the engine failed", code=ErrorCode.UNAVAILABLE.value)
    code = error.code.value
    if error.code == ErrorCode.INVALID_ARGUMENT:
        return APIError(400, error.message, code=code)
    return APIError(status, error.message, code=code)


def unavailable(message: str = "the engine is not available", status: int = 503) -> APIError:
    """A 5xx with ``code="unavailable"``."""
    return APIError(status, message, code=ErrorCode.UNAVAILABLE.value)
