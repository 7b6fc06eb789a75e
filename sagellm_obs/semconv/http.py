"""The server's HTTP span (OpenTelemetry HTTP semantic conventions, stable)."""

from __future__ import annotations

from typing import Final

SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_ROUTE: Final = "http.route"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
URL_PATH: Final = "url.path"
URL_SCHEME: Final = "url.scheme"
CLIENT_ADDRESS: Final = "client.address"
CLIENT_PORT: Final = "client.port"
USER_AGENT_ORIGINAL: Final = "user_agent.original"
NETWORK_PROTOCOL_VERSION: Final = "network.protocol.version"
TRACE_ID_HEADER: Final = "x-trace-id"
"""Response header of ``sagellm-obs serve`` with the request's 32-hex OpenTelemetry trace id."""
RUN_INFO_ROUTE: Final = "/v1/sagellm/run"
"""``sagellm-obs serve``'s GET route naming the replica: engine id, run id, model, and (to a
client on the same machine only) its run folder; ``run --endpoint`` records it per replica."""

HTTP_ATTRIBUTE_DOCS: Final[dict[str, str]] = {
    HTTP_REQUEST_METHOD: "HTTP span: GET, POST...",
    HTTP_ROUTE: "HTTP span: the matched route, e.g. /v1/chat/completions",
    HTTP_RESPONSE_STATUS_CODE: "HTTP span: int status sent",
    URL_PATH: "HTTP span: the request path",
    URL_SCHEME: "HTTP span: http or https",
    SERVER_ADDRESS: "HTTP span: host the server listens on",
    SERVER_PORT: "HTTP span: port the server listens on",
    CLIENT_ADDRESS: "HTTP span: peer address",
    CLIENT_PORT: "HTTP span: peer port",
    USER_AGENT_ORIGINAL: "HTTP span: the User-Agent header",
    NETWORK_PROTOCOL_VERSION: "HTTP span: 1.1, 2...",
}
"""Attributes of the server's SERVER span per HTTP request."""
