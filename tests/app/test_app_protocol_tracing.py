"""``@trace_protocol``: spans of sync, async, generator and async-generator methods, and errors."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from sagellm_obs import semconv as sc
from sagellm_obs.app import is_traced, trace_protocol
from sagellm_obs.protocol import Request

if TYPE_CHECKING:
    from conftest import Mem


class Boom(RuntimeError):
    pass


def make_service(mem: Mem, *, capture: bool = False) -> Any:
    @trace_protocol(tracer=mem.telemetry.tracer, capture_content=capture)
    class Service:
        """A protocol implementation."""

        def generate(self, request_id: str, prompt: str, max_tokens: int = 4) -> str:
            """Generate text."""
            return prompt.upper()

        async def agenerate(self, request: Request, tags: list[str]) -> dict[str, int]:
            """Generate text, async."""
            await asyncio.sleep(0)
            return {"n": len(tags)}

        def tokens(self, prompt: str) -> Iterator[str]:
            """Sync stream."""
            yield from prompt.split()

        async def atokens(self, prompt: str) -> AsyncIterator[str]:
            """Async stream."""
            for word in prompt.split():
                await asyncio.sleep(0)
                yield word

        def stream(self, prompt: str) -> AsyncIterator[str]:
            """A plain method returning an async iterator (as InstrumentedEngine.stream does)."""
            return self.atokens(prompt)

        def fail(self, data: bytes) -> None:
            raise Boom("no")

        async def afail(self) -> None:
            raise Boom("async no")

        def nested(self, session_id: int) -> str:
            return self.generate("inner-1", "x")

        @staticmethod
        def helper(x: dict[str, Any]) -> int:
            return len(x)

        @classmethod
        def build(cls, spec_id: str) -> str:
            return cls.__name__

        def _private(self) -> int:
            return 1

    return Service


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_sync_method_span(mem: Mem) -> None:
    svc = make_service(mem)()
    assert svc.generate("req-7", "hello world", max_tokens=8) == "HELLO WORLD"
    (span,) = mem.spans()
    assert span.name == "Service.generate"
    assert span.kind == SpanKind.INTERNAL
    a = attrs(span)
    assert a["sagellm.arg.request_id"] == "req-7"
    assert a["sagellm.arg.prompt.type"] == "str"
    assert a["sagellm.arg.prompt.size"] == 11
    assert a["sagellm.arg.max_tokens.type"] == "int"
    assert a[sc.SAGELLM_RESULT_TYPE] == "str"
    assert a[sc.CODE_FUNCTION_NAME].endswith("Service.generate")
    # no content by default
    assert not any(k.endswith(".value") for k in a)
    assert sc.SAGELLM_RESULT_VALUE not in a
    assert "hello" not in repr(a).lower()


def test_async_method_span_and_protocol_ids(mem: Mem) -> None:
    svc = make_service(mem)()
    req = Request(request_id="r-1", trace_id="t-1", prompt="secret prompt", max_tokens=2)
    assert asyncio.run(svc.agenerate(req, ["a", "b"])) == {"n": 2}
    (span,) = mem.spans()
    assert span.name == "Service.agenerate"
    a = attrs(span)
    assert a["sagellm.arg.request.type"] == "Request"
    assert a["sagellm.arg.request.request_id"] == "r-1"
    assert a["sagellm.arg.request.trace_id"] == "t-1"
    assert a["sagellm.arg.tags.size"] == 2
    assert a[sc.SAGELLM_RESULT_TYPE] == "dict"
    assert "secret" not in repr(a)


def test_generator_method_span(mem: Mem) -> None:
    svc = make_service(mem)()
    gen = svc.tokens("a b c")
    assert mem.spans() == []  # nothing runs before iteration
    assert list(gen) == ["a", "b", "c"]
    (span,) = mem.spans()
    a = attrs(span)
    assert span.name == "Service.tokens"
    assert a[sc.SAGELLM_STREAM_CHUNKS] == 3
    assert a[sc.SAGELLM_RESULT_TYPE] == "generator"
    assert a[sc.SAGELLM_STREAM_TTFC] >= 0
    assert [e.name for e in span.events] == [sc.EVENT_FIRST_CHUNK]


def test_async_generator_and_returned_async_iterator(mem: Mem) -> None:
    svc = make_service(mem)()

    async def run() -> tuple[list[str], list[str]]:
        direct = [w async for w in svc.atokens("x y")]
        returned = [w async for w in svc.stream("p q r")]
        return direct, returned

    assert asyncio.run(run()) == (["x", "y"], ["p", "q", "r"])
    direct, inner = mem.named("Service.atokens")
    assert attrs(direct)[sc.SAGELLM_STREAM_CHUNKS] == 2
    assert attrs(direct)[sc.SAGELLM_RESULT_TYPE] == "async_generator"
    (stream,) = mem.named("Service.stream")
    assert attrs(stream)[sc.SAGELLM_STREAM_CHUNKS] == 3
    assert attrs(stream)[sc.SAGELLM_RESULT_TYPE] == "async_generator"
    assert sc.EVENT_FIRST_CHUNK in [e.name for e in stream.events]
    # the traced generator stream() returns runs inside stream()'s span
    assert inner.parent is not None and inner.parent.span_id == stream.context.span_id
    assert attrs(inner)[sc.SAGELLM_STREAM_CHUNKS] == 3
    assert direct.parent is None


def test_errors_are_recorded_and_reraised_unchanged(mem: Mem) -> None:
    svc = make_service(mem)()
    with pytest.raises(Boom, match="no") as info:
        svc.fail(b"xyz")
    assert info.type is Boom
    with pytest.raises(Boom):
        asyncio.run(svc.afail())
    for span in mem.spans():
        assert span.status.status_code == StatusCode.ERROR
        assert attrs(span)[sc.ERROR_TYPE] == "Boom"
        assert [e.name for e in span.events] == [sc.EVENT_EXCEPTION]
    assert attrs(mem.named("Service.fail")[0])["sagellm.arg.data.size"] == 3


def test_stream_error_and_early_close(mem: Mem) -> None:
    @trace_protocol(tracer=mem.telemetry.tracer)
    class Streams:
        def broken(self) -> Iterator[int]:
            yield 1
            raise Boom("mid-stream")

        async def long(self) -> AsyncIterator[int]:
            for i in range(100):
                yield i

    s = Streams()
    seen: list[int] = []
    with pytest.raises(Boom):
        seen.extend(s.broken())
    assert seen == [1]

    async def partial() -> None:
        agen: Any = s.long()
        assert await agen.__anext__() == 0
        await agen.aclose()

    asyncio.run(partial())
    (broken,) = mem.named("Streams.broken")
    assert broken.status.status_code == StatusCode.ERROR
    assert attrs(broken)[sc.SAGELLM_STREAM_CHUNKS] == 1
    (long,) = mem.named("Streams.long")
    assert attrs(long)[sc.SAGELLM_CANCELLED] is True
    assert long.status.status_code == StatusCode.UNSET


def test_nesting_static_and_class_methods(mem: Mem) -> None:
    cls = make_service(mem)
    svc = cls()
    assert svc.nested(5) == "X"
    assert cls.helper({"a": 1}) == 1
    assert cls.build("s-1") == "Service"
    assert svc._private() == 1
    (outer,) = mem.named("Service.nested")
    (inner,) = mem.named("Service.generate")
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id
    assert attrs(outer)["sagellm.arg.session_id"] == 5
    assert attrs(mem.named("Service.helper")[0])["sagellm.arg.x.size"] == 1
    assert attrs(mem.named("Service.build")[0])["sagellm.arg.spec_id"] == "s-1"
    assert not any("_private" in s.name for s in mem.spans())


def test_idempotent_subclasses_and_super_chains(mem: Mem) -> None:
    base = make_service(mem)
    assert trace_protocol(tracer=mem.telemetry.tracer)(base) is base  # twice: no-op

    class Sub(base):  # type: ignore[misc,valid-type]
        def generate(self, request_id: str, prompt: str, max_tokens: int = 4) -> str:
            return "sub:" + str(super().generate(request_id, prompt, max_tokens))

        def extra(self, call_id: str) -> str:
            return call_id

    sub = Sub()
    assert sub.generate("r", "ab") == "sub:AB"
    assert sub.extra("c-1") == "c-1"
    assert sub.tokens("a") is not None
    names = [s.name for s in mem.spans()]
    assert names == ["Sub.generate", "Sub.extra"]  # one span for the super() chain
    assert is_traced(Sub.extra) and is_traced(base) and is_traced(Sub.generate)


def test_inherited_methods_are_wrapped_without_touching_the_base(mem: Mem) -> None:
    class Mixin:
        def ping(self, item_id: int) -> int:
            return item_id

    @trace_protocol(tracer=mem.telemetry.tracer)
    class Impl(Mixin):
        pass

    assert Impl().ping(3) == 3
    assert Mixin().ping(4) == 4
    assert [s.name for s in mem.spans()] == ["Impl.ping"]
    assert not is_traced(Mixin.ping)


def test_signatures_and_kinds_preserved(mem: Mem) -> None:
    cls = make_service(mem)
    assert cls.generate.__doc__ == "Generate text."
    assert cls.generate.__name__ == "generate"
    sig = inspect.signature(cls.generate)
    assert list(sig.parameters) == ["self", "request_id", "prompt", "max_tokens"]
    assert inspect.iscoroutinefunction(cls.agenerate)
    assert inspect.isgeneratorfunction(cls.tokens)
    assert inspect.isasyncgenfunction(cls.atokens)
    assert isinstance(inspect.getattr_static(cls, "helper"), staticmethod)
    assert isinstance(inspect.getattr_static(cls, "build"), classmethod)


def test_capture_content_records_values(mem: Mem) -> None:
    svc = make_service(mem, capture=True)()
    svc.generate("r", "visible text")
    a = attrs(mem.spans()[0])
    assert a["sagellm.arg.prompt.value"] == "visible text"
    assert a[sc.SAGELLM_RESULT_VALUE] == "VISIBLE TEXT"


def test_broken_tracer_never_breaks_the_call(mem: Mem) -> None:
    class BadTracer:
        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("telemetry down")

    bad: Any = BadTracer()

    @trace_protocol(tracer=bad)
    class Svc:
        def run(self, x: int) -> int:
            return x + 1

        def gen(self) -> Iterator[int]:
            yield 1

    assert Svc().run(1) == 2
    assert list(Svc().gen()) == [1]


def test_default_tracer_is_the_current_telemetry(mem: Mem, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sagellm_obs.app.providers.current", lambda: mem.telemetry)

    @trace_protocol
    class Bare:
        def run(self) -> int:
            return 1

    assert Bare().run() == 1
    assert [s.name for s in mem.spans()] == ["Bare.run"]
