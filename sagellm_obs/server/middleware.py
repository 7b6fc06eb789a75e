"""The ASGI middleware every request passes: HTTP span, API key, body limit, error boundary.

It sits between Starlette's outer error middleware and the routes, so it sees every response,
including the 401/413 it answers itself and the 4xx the routes raise, and it turns any
unexpected exception into an OpenAI-style 500 (logged, never echoed) instead of a plain-text one.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sagellm_obs.server.errors import CODE_INVALID_API_KEY, APIError, invalid_argument
from sagellm_obs.server.tracing import HttpSpan
from sagellm_obs.telemetry import TelemetryPort

_log = logging.getLogger(__name__)

HTTP_SPAN_STATE = "http_span"
"""Key of the request's :class:`HttpSpan` in ``scope["state"]`` (``request.state.http_span``)."""


def too_large(limit: int) -> APIError:
    """The 413 answered for a body over ``limit`` bytes."""
    return invalid_argument(f"request body exceeds {limit} bytes", status=413)


async def send_error(send: Send, error: APIError) -> None:
    """Answer with an OpenAI-style JSON error."""
    body = error.body_bytes()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class ServerMiddleware:
    """Tracing, authentication and the body-size limit for every HTTP request.

    Args:
        app: The wrapped ASGI app.
        telemetry: Returns the telemetry the HTTP spans go to (the engine's).
        api_key: Required as ``Authorization: Bearer <key>`` on every path but ``open_paths``.
        max_body_bytes: Larger bodies get a 413.
        routes: Paths that are routes (their span is named ``"{method} {path}"``).
        open_paths: Paths served without the API key.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        telemetry: Callable[[], TelemetryPort],
        api_key: str | None,
        max_body_bytes: int,
        routes: Collection[str],
        open_paths: Collection[str] = ("/health",),
    ) -> None:
        self.app = app
        self.telemetry = telemetry
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes
        self.routes = frozenset(routes)
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        span = HttpSpan(self.telemetry(), scope, path if path in self.routes else None)
        scope.setdefault("state", {})[HTTP_SPAN_STATE] = span
        status: int | None = None
        error_type: str | None = None

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [*message.get("headers", []), *span.response_headers()]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                span.responded()
            await send(message)

        try:
            early = self._check(path, span.headers)
            if early is not None:
                await send_error(send_traced, early)
                return
            await self.app(scope, self._limited(receive), send_traced)
        except Exception as exc:
            error_type = type(exc).__name__
            if status is None:
                _log.error("sagellm-obs server: %s %s failed", scope.get("method"), path,
                           exc_info=exc)  # fmt: skip
                await send_error(send_traced, APIError(500, "internal server error"))
            else:  # the response has started (e.g. the client went away mid-stream)
                _log.info("sagellm-obs server: %s after the response started: %r", path, exc)
        except BaseException as exc:  # cancellation: record it, let it propagate
            error_type = type(exc).__name__
            raise
        finally:
            span.finish(status, error_type)

    def _check(self, path: str, headers: dict[str, str]) -> APIError | None:
        """The API key and the declared body size."""
        if self.api_key is not None and path not in self.open_paths:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), self.api_key
            ):
                return APIError(
                    401,
                    "missing or incorrect API key (send 'Authorization: Bearer <key>')",
                    code=CODE_INVALID_API_KEY,
                )
        length = headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_body_bytes:
            return too_large(self.max_body_bytes)
        return None

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that raises a 413 :class:`APIError` once the body passes the limit."""
        seen = 0
        limit = self.max_body_bytes

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large(limit)
            return message

        return receive_limited
