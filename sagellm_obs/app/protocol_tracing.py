"""``@trace_protocol``: one INTERNAL span around every public method call of a class.

.. code-block:: python

    from sagellm_obs.app import trace_protocol


    @trace_protocol  # or @trace_protocol(tracer=..., capture_content=False)
    class MyEngine:
        def generate(self, request_id: str, prompt: str) -> str: ...

        async def stream(self, prompt: str) -> AsyncIterator[str]: ...

What is wrapped:

* When the class is decorated, every public (no leading ``_``) plain, static and class method it
  defines **or inherits** (Python functions only, not ``object``'s or builtins'); inherited ones are
  wrapped on the decorated class, so base classes are not modified.
* Subclasses defined **after** decoration: the decorator installs an ``__init_subclass__`` hook
  that wraps the public methods each subclass defines itself. Subclasses that existed before the
  decoration are not touched. Properties and nested classes are never wrapped.

Each call gets a span ``{Class}.{method}`` (the runtime class of ``self``/``cls``; the defining
class for static methods), kind INTERNAL, parented on the current span and current while the
method runs, with:

* ``code.function.name``; ``sagellm.arg.<name>.type`` for every argument, ``.size`` for
  str/bytes/list/tuple/dict/set ones, the value itself for arguments named ``id`` or ``*_id``
  (str or int), and ``.request_id``/``.trace_id`` of objects that carry them (protocol requests);
  argument values (``.value``, truncated) only when content capture is on;
* ``sagellm.result.type`` (and ``sagellm.result.value`` with capture on);
* for streams (sync and async generator methods, and methods returning a generator or an async
  iterator, e.g. ``InstrumentedEngine.stream``): the span lasts until the stream is exhausted or
  closed; ``sagellm.stream.chunks``, a ``gen_ai.first_chunk`` event and
  ``sagellm.stream.time_to_first_chunk`` (seconds from the call); closing early or cancelling the
  task sets ``sagellm.cancelled``;
* errors: an ``exception`` event, ERROR status and ``error.type``; the exception is re-raised
  unchanged. ``asyncio.CancelledError`` counts as cancellation, not as an error.

Guarantees: decorating twice (or decorating a subclass of a decorated class) does not add spans; a
call made while the same method of the same object is already traced in this context (``super()``
chains, recursion) does not open a second span; ``functools.wraps`` keeps names, docstrings and
signatures, and the wrapper of a coroutine/generator function is one too; any failure of the
telemetry itself is logged at DEBUG and never reaches the call.

Tracer: the ``tracer`` given, else ``tracer_provider.get_tracer``, else the current sagellm_obs
telemetry's tracer (:func:`sagellm_obs.telemetry.current`), else the global OpenTelemetry tracer
provider -- resolved at each call (see :mod:`sagellm_obs.app.providers`).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from sagellm_obs import semconv as sc
from sagellm_obs.app.providers import Providers
from sagellm_obs.app.traced_call import (
    NULL_CALL,
    CallSpan,
    NullCall,
    active_calls,
    summarize_argument,
)

_log = logging.getLogger(__name__)

_C = TypeVar("_C", bound=type)

TRACED_MARK = "__sagellm_traced__"
"""Attribute set on every wrapper (and on decorated classes)."""


@dataclass(frozen=True)
class _Options:
    providers: Providers
    capture_content: bool | None


@overload
def trace_protocol(cls: _C, /) -> _C: ...


@overload
def trace_protocol(
    cls: None = None,
    /,
    *,
    tracer: trace.Tracer | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    capture_content: bool | None = None,
) -> Callable[[_C], _C]: ...


def trace_protocol(
    cls: _C | None = None,
    /,
    *,
    tracer: trace.Tracer | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    capture_content: bool | None = None,
) -> _C | Callable[[_C], _C]:
    """Trace every public method of a class and of its later subclasses (see the module doc).

    Args:
        cls: The class, when used bare as ``@trace_protocol``.
        tracer: Record into this tracer.
        tracer_provider: Else get the tracer from this provider.
        capture_content: Record argument and result values (truncated). None follows the current
            telemetry's ``capture_content`` (off by default).

    Returns:
        The class itself (modified in place), or a decorator when called with options.
    """
    options = _Options(Providers(tracer=tracer, tracer_provider=tracer_provider), capture_content)

    def decorate(klass: _C) -> _C:
        if klass.__dict__.get(TRACED_MARK):
            return klass  # decorated already: the first decoration wins
        try:
            _wrap_class(klass, options, inherited=True)
            _install_subclass_hook(klass, options)
            type.__setattr__(klass, TRACED_MARK, True)
        except Exception:
            _log.warning("sagellm-obs: could not trace %r", klass, exc_info=True)
        return klass

    return decorate(cls) if cls is not None else decorate


def is_traced(obj: Any) -> bool:
    """Whether a function or class was wrapped by :func:`trace_protocol`."""
    target = getattr(obj, "__func__", obj)
    if isinstance(target, type):
        return bool(target.__dict__.get(TRACED_MARK))
    return bool(getattr(target, TRACED_MARK, False))


# --- class surgery ------------------------------------------------------------------------------
def _wrap_class(cls: type, options: _Options, *, inherited: bool) -> None:
    sources = [k for k in cls.__mro__ if k is not object] if inherited else [cls]
    seen: set[str] = set()
    for klass in sources:
        for name, attr in list(vars(klass).items()):
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            wrapped = _wrap_attr(attr, name, cls, options)
            if wrapped is not None:
                type.__setattr__(cls, name, wrapped)


def _install_subclass_hook(cls: type, options: _Options) -> None:
    original = cls.__dict__.get("__init_subclass__")
    original_fn = getattr(original, "__func__", original)
    base: Any = cls

    def __init_subclass__(sub: type, /, **kwargs: Any) -> None:
        if original_fn is not None:
            original_fn(sub, **kwargs)
        else:
            super(base, sub).__init_subclass__(**kwargs)
        try:
            _wrap_class(sub, options, inherited=False)
        except Exception:
            _log.warning("sagellm-obs: could not trace %r", sub, exc_info=True)

    type.__setattr__(cls, "__init_subclass__", classmethod(__init_subclass__))


def _wrap_attr(attr: Any, name: str, owner: type, options: _Options) -> Any:
    if isinstance(attr, staticmethod):
        fn = attr.__func__
        if inspect.isfunction(fn) and not getattr(fn, TRACED_MARK, False):
            return staticmethod(_wrap_function(fn, name, owner, "static", options))
        return None
    if isinstance(attr, classmethod):
        fn = attr.__func__
        if inspect.isfunction(fn) and not getattr(fn, TRACED_MARK, False):
            return classmethod(_wrap_function(fn, name, owner, "class", options))
        return None
    if inspect.isfunction(attr) and not getattr(attr, TRACED_MARK, False):
        return _wrap_function(attr, name, owner, "instance", options)
    return None


@dataclass
class _Method:
    """What a wrapper knows about the method it wraps."""

    fn: Callable[..., Any]
    name: str
    owner: type
    kind: str  # "instance" | "class" | "static"
    options: _Options
    _signature: inspect.Signature | None = None

    @property
    def signature(self) -> inspect.Signature:
        if self._signature is None:
            self._signature = inspect.signature(self.fn)
        return self._signature

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NullCall:
        """Start the span of a call (or :data:`NULL_CALL` when it must not get one)."""
        try:
            if self.kind == "static" or not args:
                target: Any = self.owner
                cls_name = self.owner.__name__
            else:
                target = args[0]
                cls_name = target.__name__ if self.kind == "class" else type(target).__name__
            key = (id(target), self.name)
            if key in active_calls.get():
                return NULL_CALL
            capture = self.options.capture_content
            if capture is None:
                capture = self.options.providers.capture()
            attrs: dict[str, Any] = {
                sc.CODE_FUNCTION_NAME: f"{self.fn.__module__}.{self.fn.__qualname__}"
            }
            attrs.update(self.summarize(args, kwargs, capture))
            span = self.options.providers.get_tracer().start_span(
                f"{cls_name}.{self.name}", kind=SpanKind.INTERNAL, attributes=attrs
            )
            return CallSpan(span, key, capture)
        except Exception:
            _log.debug("sagellm-obs: span not started", exc_info=True)
            return NULL_CALL

    def summarize(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], capture: bool
    ) -> dict[str, Any]:
        """Safe attributes describing the arguments (see the module doc)."""
        sig = self.signature
        try:
            bound = sig.bind_partial(*args, **kwargs)
        except TypeError:
            return {}
        params = list(sig.parameters.values())
        skip = params[0].name if self.kind != "static" and params else None
        out: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if name == skip:
                continue
            kind = sig.parameters[name].kind
            if kind == inspect.Parameter.VAR_KEYWORD and isinstance(value, dict):
                for key, item in value.items():
                    summarize_argument(out, str(key), item, capture)
            else:
                summarize_argument(out, name, value, capture)
        return out


# --- wrappers -----------------------------------------------------------------------------------
def _wrap_function(
    fn: Callable[..., Any], name: str, owner: type, kind: str, options: _Options
) -> Callable[..., Any]:
    meta = _Method(fn, name, owner, kind, options)
    wrapper: Callable[..., Any]
    if inspect.isasyncgenfunction(fn):
        wrapper = _async_generator_wrapper(meta)
    elif inspect.isgeneratorfunction(fn):
        wrapper = _generator_wrapper(meta)
    elif inspect.iscoroutinefunction(fn):
        wrapper = _coroutine_wrapper(meta)
    else:
        wrapper = _plain_wrapper(meta)
    functools.update_wrapper(wrapper, fn)
    setattr(wrapper, TRACED_MARK, True)
    return wrapper


def _plain_wrapper(meta: _Method) -> Callable[..., Any]:
    fn = meta.fn

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = meta.begin(args, kwargs)
        try:
            with call.step():
                value = fn(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        return call.result(value)

    return wrapper


def _coroutine_wrapper(meta: _Method) -> Callable[..., Any]:
    fn = meta.fn

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = meta.begin(args, kwargs)
        try:
            with call.step():
                value = await fn(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        return call.result(value)

    return wrapper


def _generator_wrapper(meta: _Method) -> Callable[..., Any]:
    fn = meta.fn

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = meta.begin(args, kwargs)
        try:
            with call.step():
                gen = fn(*args, **kwargs)
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                try:
                    with call.step():
                        if thrown is not None:
                            exc, thrown = thrown, None
                            item = gen.throw(exc)
                        else:
                            item = gen.send(sent)
                except StopIteration as stop:
                    call.finish(stream="generator")
                    return stop.value
                call.chunk(item)
                try:
                    sent = yield item
                except GeneratorExit:
                    gen.close()
                    raise
                except BaseException as exc:
                    thrown = exc
        except BaseException as exc:
            call.fail(exc)  # GeneratorExit: cancelled
            raise

    return wrapper


def _async_generator_wrapper(meta: _Method) -> Callable[..., Any]:
    fn = meta.fn

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = meta.begin(args, kwargs)
        try:
            with call.step():
                agen = fn(*args, **kwargs)
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                try:
                    with call.step():
                        if thrown is not None:
                            exc, thrown = thrown, None
                            item = await agen.athrow(exc)
                        else:
                            item = await agen.asend(sent)
                except StopAsyncIteration:
                    call.finish(stream="async_generator")
                    return
                call.chunk(item)
                try:
                    sent = yield item
                except GeneratorExit:
                    await agen.aclose()
                    raise
                except BaseException as exc:
                    thrown = exc
        except BaseException as exc:
            call.fail(exc)
            raise

    return wrapper
