"""``instrument_openai()``: GenAI CLIENT spans and metrics for the official ``openai`` client.

.. code-block:: python

    from openai import OpenAI
    from sagellm_obs.app import instrument_openai

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    with instrument_openai(client):  # or keep the handle and call .uninstrument()
        client.chat.completions.create(model="tiny-llama", messages=[...])

Patched: ``chat.completions.create`` and ``completions.create``, sync (``OpenAI``) and async
(``AsyncOpenAI``), streaming or not -- of one client (instance attributes on its resources) or,
with ``client=None``, of every client (the ``Completions``/``AsyncCompletions`` resource classes).
No ``wrapt`` needed: plain attribute patching, undone by :meth:`OpenAIInstrumentation.uninstrument`.
Instrumenting something already instrumented is a no-op (no double spans).

Each call gets a CLIENT span ``"chat {model}"`` / ``"text_completion {model}"`` with the GenAI
request attributes (``gen_ai.request.*``, ``server.address``/``port``), the response id/model,
finish reasons and usage (``gen_ai.usage.*``, cache reads from
``prompt_tokens_details.cached_tokens``), tool-call names, and the ``gen_ai.client.*`` metrics. The
span is current during the HTTP call and its W3C ``traceparent`` is added to the request headers
(``extra_headers``), so our server's HTTP span and the engine's spans join the client's trace (an
explicit ``traceparent`` in ``extra_headers`` becomes the client span's parent). A streaming call
returns a wrapped ``Stream``/``AsyncStream`` (``isinstance`` still holds; other attributes are
delegated) that records the first chunk and ends the span when the stream is exhausted, closed
(recorded as ``sagellm.cancelled``) or fails. Prompts and outputs go on the span only with content
capture on (``gen_ai.input.messages``, ``gen_ai.output.messages``, ``gen_ai.tool.definitions``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sagellm_obs import semconv as sc
from sagellm_obs.app.genai import ClientOperation
from sagellm_obs.app.openai_recording import finish_call, to_json
from sagellm_obs.app.providers import Providers
from sagellm_obs.telemetry import Telemetry

_log = logging.getLogger(__name__)

_MARK = "__sagellm_openai__"
_PROPAGATOR = TraceContextTextMapPropagator()
_lock = threading.Lock()


@dataclass
class _Patch:
    owner: Any  # a resource class, or a resource instance
    original: Any
    wrapper: Any
    on_instance: bool


@dataclass
class OpenAIInstrumentation:
    """The handle :func:`instrument_openai` returns; a context manager that uninstruments."""

    patches: list[_Patch] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """Whether this handle still has patches in place."""
        return bool(self.patches)

    def uninstrument(self) -> None:
        """Undo the patches this handle made (safe to call twice)."""
        with _lock:
            for patch in reversed(self.patches):
                with contextlib.suppress(Exception):
                    if patch.on_instance:
                        if patch.owner.__dict__.get("create") is patch.wrapper:
                            del patch.owner.create
                    elif patch.owner.__dict__.get("create") is patch.wrapper:
                        setattr(patch.owner, "create", patch.original)  # noqa: B010
            self.patches.clear()

    def __enter__(self) -> OpenAIInstrumentation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstrument()


def instrument_openai(
    client: Any = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    telemetry: Telemetry | None = None,
    capture_content: bool | None = None,
) -> OpenAIInstrumentation:
    """Trace the completions calls of one ``openai`` client, or of all of them.

    Args:
        client: An ``OpenAI`` or ``AsyncOpenAI`` client; None patches the resource classes.
        tracer_provider: Where spans go; default the current sagellm_obs telemetry, else the
            global provider (resolved at each call).
        meter_provider: Where the ``gen_ai.client.*`` metrics go (same default).
        telemetry: A sagellm_obs telemetry to use for both.
        capture_content: Record prompts and outputs; None follows the telemetry (off by default).

    Returns:
        A handle: ``uninstrument()`` it, or use it as a context manager.
    """
    providers = Providers(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        telemetry=telemetry,
        capture_content=capture_content,
    )
    handle = OpenAIInstrumentation()
    with _lock:
        for owner, operation, is_async, on_instance in _targets(client):
            current = owner.__dict__.get("create") if on_instance else owner.__dict__["create"]
            resolved = getattr(owner, "create", None)
            if getattr(current, _MARK, False) or getattr(resolved, _MARK, False):
                continue  # already instrumented
            original = resolved if on_instance else current
            if original is None:
                continue
            wrapper = _wrapper(original, operation, is_async, providers, bound=on_instance)
            setattr(owner, "create", wrapper)  # noqa: B010
            handle.patches.append(_Patch(owner, original, wrapper, on_instance))
    return handle


def _targets(client: Any) -> list[tuple[Any, str, bool, bool]]:
    from openai.resources import completions as text
    from openai.resources.chat.completions import completions as chat

    if client is None:
        return [
            (chat.Completions, sc.OP_CHAT, False, False),
            (chat.AsyncCompletions, sc.OP_CHAT, True, False),
            (text.Completions, sc.OP_TEXT_COMPLETION, False, False),
            (text.AsyncCompletions, sc.OP_TEXT_COMPLETION, True, False),
        ]
    chat_res, text_res = client.chat.completions, client.completions
    return [
        (chat_res, sc.OP_CHAT, isinstance(chat_res, chat.AsyncCompletions), True),
        (text_res, sc.OP_TEXT_COMPLETION, isinstance(text_res, text.AsyncCompletions), True),
    ]


def _wrapper(
    original: Callable[..., Any],
    operation: str,
    is_async: bool,
    providers: Providers,
    *,
    bound: bool,
) -> Callable[..., Any]:
    wrapper: Callable[..., Any]
    if is_async:

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            resource = getattr(original, "__self__", None) if bound else (args[0] if args else None)
            op = _start(resource, kwargs, operation, providers)
            if op is None:
                return await original(*args, **kwargs)
            try:
                with op.activated():
                    result = await original(*args, **kwargs)
            except BaseException as exc:
                op.fail(exc)
                raise
            return finish_call(result, op, is_async=True)

    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            resource = getattr(original, "__self__", None) if bound else (args[0] if args else None)
            op = _start(resource, kwargs, operation, providers)
            if op is None:
                return original(*args, **kwargs)
            try:
                with op.activated():
                    result = original(*args, **kwargs)
            except BaseException as exc:
                op.fail(exc)
                raise
            return finish_call(result, op, is_async=False)

    functools.update_wrapper(wrapper, original)
    setattr(wrapper, _MARK, True)
    return wrapper


# --- recording ----------------------------------------------------------------------------------
def _given(value: Any) -> Any:
    """A plain request value, or None for openai's NOT_GIVEN/omit sentinels and other objects."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _server(resource: Any) -> tuple[str | None, int | None]:
    try:
        url = resource._client.base_url
        port = url.port or {"https": 443, "http": 80}.get(url.scheme)
        return str(url.host) or None, int(port) if port else None
    except Exception:
        return None, None


def _start(
    resource: Any, kwargs: dict[str, Any], operation: str, providers: Providers
) -> ClientOperation | None:
    """Start the span and inject its traceparent into ``kwargs["extra_headers"]``."""
    try:
        stop = _given(kwargs.get("stop"))
        choices = _given(kwargs.get("n"))
        host, port = _server(resource)
        attrs = {
            sc.GEN_AI_REQUEST_MAX_TOKENS: _given(kwargs.get("max_completion_tokens"))
            or _given(kwargs.get("max_tokens")),
            sc.GEN_AI_REQUEST_TEMPERATURE: _given(kwargs.get("temperature")),
            sc.GEN_AI_REQUEST_TOP_P: _given(kwargs.get("top_p")),
            sc.GEN_AI_REQUEST_SEED: _given(kwargs.get("seed")),
            sc.GEN_AI_REQUEST_FREQUENCY_PENALTY: _given(kwargs.get("frequency_penalty")),
            sc.GEN_AI_REQUEST_PRESENCE_PENALTY: _given(kwargs.get("presence_penalty")),
            sc.GEN_AI_REQUEST_STOP_SEQUENCES: [stop] if isinstance(stop, str) else stop,
            sc.GEN_AI_REQUEST_CHOICE_COUNT: choices if choices not in (None, 1) else None,
            sc.SERVER_ADDRESS: host,
            sc.SERVER_PORT: port,
        }
        headers = dict(kwargs.get("extra_headers") or {})
        parent = None
        if any(k.lower() == "traceparent" for k in headers):
            carrier = {k.lower(): str(v) for k, v in headers.items() if isinstance(v, str)}
            parent = _PROPAGATOR.extract(carrier)
            for key in [k for k in headers if k.lower() in ("traceparent", "tracestate")]:
                del headers[key]
        op = ClientOperation(
            providers,
            operation=operation,
            model=_given(kwargs.get("model")),
            provider_name=sc.PROVIDER_OPENAI,
            attributes=attrs,
            stream=bool(_given(kwargs.get("stream"))),
            context=parent,
        )
        if op.capture_content:
            messages = kwargs.get("messages") if operation == sc.OP_CHAT else kwargs.get("prompt")
            op.content(sc.GEN_AI_INPUT_MESSAGES, to_json(messages))
            tools = kwargs.get("tools")
            if isinstance(tools, (list, tuple)):
                op.content(sc.GEN_AI_TOOL_DEFINITIONS, to_json(tools))
        _PROPAGATOR.inject(headers, context=op.context())
        kwargs["extra_headers"] = headers
        return op
    except Exception:
        _log.debug("sagellm-obs: openai call not traced", exc_info=True)
        return None
