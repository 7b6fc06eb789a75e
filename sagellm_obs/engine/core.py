"""``InstrumentedEngine``: vLLM's ``AsyncLLM`` with protocol requests in and true telemetry out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import trace

from sagellm_obs import semconv as sc
from sagellm_obs.engine.convert import (
    build_metrics,
    fill_timing,
    invalid,
    protocol_finish_reason,
    sampling_kwargs,
)
from sagellm_obs.engine.stat_logger import StepSink, stat_logger_factory
from sagellm_obs.protocol import (
    ChatMessage,
    Error,
    ErrorCode,
    ProtocolValidationError,
    Request,
    Response,
    StreamEvent,
    StreamEventDelta,
    StreamEventEnd,
    StreamEventStart,
    validate,
)
from sagellm_obs.protocol.tracecontext import (
    TRACESTATE_KEY,
    otel_trace_id,
    traceparent_from_metadata,
)
from sagellm_obs.telemetry import RequestRecord, Telemetry, TelemetryPort
from sagellm_obs.telemetry import configure as configure_telemetry
from sagellm_obs.telemetry import current as current_telemetry

_log = logging.getLogger(__name__)

TokenCallback = Callable[[StreamEventDelta], Any]


@dataclass
class EngineConfig:
    """How to start vLLM. Unknown keys in ``extra`` go straight to ``AsyncEngineArgs``.

    Attributes:
        model: A model folder, or ``"tiny"`` for the offline tiny model (built on first use).
        served_model_name: Name reported in spans and responses; default: the folder name.
        max_model_len: Context length.
        enable_prefix_caching: vLLM automatic prefix caching.
        kv_cache_memory_bytes: KV-cache size (small keeps CPU runs light); None lets vLLM decide.
        block_size: KV block size in tokens (CPU: a multiple of 32; vLLM's CPU default is 128).
        in_process: Run EngineCore in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): starts in
            seconds on CPU. None keeps vLLM's default (multi-process).
        seed: Engine seed.
        dtype: Model dtype (float32 is fastest on CPUs without AVX512-BF16).
        enforce_eager: Skip torch.compile (it costs ~45 s at first start on CPU).
        extra: More ``AsyncEngineArgs`` keywords.
    """

    model: str = "tiny"
    served_model_name: str | None = None
    max_model_len: int = 1024
    enable_prefix_caching: bool = True
    kv_cache_memory_bytes: int | None = 256 * 2**20
    block_size: int | None = None
    in_process: bool | None = None
    seed: int = 0
    dtype: str = "float32"
    enforce_eager: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def engine_args(self, model_path: str) -> dict[str, Any]:
        """Keyword arguments for ``AsyncEngineArgs``."""
        kw: dict[str, Any] = {
            "model": model_path,
            "served_model_name": self.served_model_name or self.model_name(model_path),
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "enable_prefix_caching": self.enable_prefix_caching,
            "enforce_eager": self.enforce_eager,
            "seed": self.seed,
            "disable_log_stats": False,  # RequestOutput.metrics is None without stats
        }
        if self.kv_cache_memory_bytes is not None:
            kw["kv_cache_memory_bytes"] = self.kv_cache_memory_bytes
        if self.block_size is not None:
            kw["block_size"] = self.block_size
        kw.update(self.extra)
        return kw

    def model_name(self, model_path: str) -> str:
        """The served model name."""
        if self.served_model_name:
            return self.served_model_name
        return "tiny-llama" if self.model == "tiny" else Path(model_path).name


def resolve_model(model: str) -> str:
    """A model folder for ``model``; ``"tiny"`` builds (once) and returns the offline tiny model."""
    if model == "tiny":
        from sagellm_obs.models import TINY, build_model

        return str(build_model(TINY))
    return model


class InstrumentedEngine:
    """An instrumented vLLM engine. Create it with :meth:`start` inside a running event loop.

    Each request becomes one SERVER span (back-dated to arrival, parented on the request's
    ``traceparent``) with ``queue``/``prefill``/``decode`` children, GenAI + vLLM + ``sagellm.*``
    attributes and metric points; the protocol ``Metrics`` it returns hold the same numbers.
    """

    def __init__(
        self,
        llm: Any,
        config: EngineConfig,
        telemetry: Telemetry | None,
        sink: StepSink,
        model_path: str,
    ) -> None:
        self.llm = llm
        self.config = config
        self._pinned = telemetry
        self.sink = sink
        self.model_path = model_path
        self.model_name = config.model_name(model_path)
        self.engine_id = self.telemetry.engine_id
        self._kv_bytes_per_token = _kv_bytes_per_token(llm)
        self._component = ["sagellm-obs", f"vllm:{_vllm_version()}"]
        self._tokenizer: Any = None
        #: Called with vLLM's final ``RequestOutput`` of each request (for cross-checks in tests
        #: and notebooks); must be cheap and must not raise.
        self.on_request_output: Callable[[Any], None] | None = None

    @property
    def telemetry(self) -> Telemetry:
        """The telemetry in use: the one given to :meth:`start`, else the current one.

        An engine started without an explicit telemetry follows ``configure()`` calls made later
        (re-running a notebook cell re-configures without restarting vLLM).
        """
        if self._pinned is not None:
            return self._pinned
        return current_telemetry() or configure_telemetry()

    # --- lifecycle -------------------------------------------------------------------------------
    @classmethod
    async def start(
        cls,
        config: EngineConfig | None = None,
        *,
        telemetry: Telemetry | None = None,
        **overrides: Any,
    ) -> InstrumentedEngine:
        """Start vLLM with our stat logger. ``overrides`` set :class:`EngineConfig` fields."""
        cfg = config or EngineConfig()
        for key, value in overrides.items():
            setattr(cfg, key, value)
        tel: TelemetryPort = telemetry or current_telemetry() or configure_telemetry()
        pinned = telemetry
        if cfg.in_process is not None:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if cfg.in_process else "1"
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        model_path = await asyncio.to_thread(resolve_model, cfg.model)

        import vllm.envs
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        # An in-process vLLM engine started earlier may have frozen vLLM's env settings.
        if hasattr(vllm.envs, "disable_envs_cache"):
            vllm.envs.disable_envs_cache()

        sink = StepSink(
            (lambda: pinned) if pinned is not None else current_telemetry, tel.engine_id
        )
        args = AsyncEngineArgs(**cfg.engine_args(model_path))
        started = time.time()
        llm = AsyncLLM.from_engine_args(args, stat_loggers=[stat_logger_factory(sink)])
        engine = cls(llm, cfg, pinned, sink, model_path)
        tel.peak_mem_mb(sample=True)  # the model is loaded: count it in the peak
        tel.annotate_run(
            model=engine.model_name,
            model_path=model_path,
            engine_args=dict(cfg.engine_args(model_path).items()),
            engine_start_seconds=round(time.time() - started, 3),
            kv_bytes_per_token=engine._kv_bytes_per_token,
        )
        return engine

    def shutdown(self) -> None:
        """Stop vLLM and flush telemetry (the telemetry itself stays configured).

        Call it from the engine's event-loop thread: vLLM cancels its output task there.
        """
        llm, self.llm = self.llm, None
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.shutdown()
                # AsyncLLM.__del__ calls shutdown() again, which fails at interpreter exit.
                llm.shutdown = _noop
        # Flush what is configured; never configure a new telemetry (and run folder) to do it.
        tel: TelemetryPort | None = self._pinned or current_telemetry()
        if tel is not None:
            tel.flush()

    # --- requests --------------------------------------------------------------------------------
    async def generate(self, request: Request | dict[str, Any]) -> Response:
        """Run one request to completion.

        Raises:
            ProtocolValidationError: The request is invalid (``ErrorCode.INVALID_ARGUMENT``).
        """
        end: StreamEventEnd | None = None
        async for event in self._run(request, stream=False, on_token=None):
            if isinstance(event, StreamEventEnd):
                end = event
        assert end is not None
        return Response(
            request_id=end.request_id,
            trace_id=end.trace_id,
            output_text=end.content,
            output_tokens=end.output_tokens,
            prompt_tokens=end.prompt_tokens,
            finish_reason=end.finish_reason,
            metrics=end.metrics,
            error=end.error,
        )

    def stream(
        self, request: Request | dict[str, Any], *, on_token: TokenCallback | None = None
    ) -> AsyncIterator[StreamEvent]:
        """Stream ``StreamEventStart``, one ``StreamEventDelta`` per engine output, then ``End``.

        ``on_token`` is called with each delta. Closing the iterator early (or cancelling the
        task) aborts the vLLM request, recorded as cancelled.
        """
        return self._run(request, stream=True, on_token=on_token)

    async def generate_batch(self, requests: Sequence[Request | dict[str, Any]]) -> list[Response]:
        """Run requests concurrently; responses in input order."""
        return list(await asyncio.gather(*(self.generate(r) for r in requests)))

    async def abort(self, request_id: str) -> None:
        """Abort a running request; its stream ends with ``finish_reason='stop'`` and is marked
        cancelled in telemetry."""
        await self.llm.abort(request_id)

    # llama-stack style calls ---------------------------------------------------------------------
    async def completion(
        self, content: str, *, max_tokens: int = 64, stream: bool = False, **params: Any
    ) -> Response | AsyncIterator[StreamEvent]:
        """Text completion of ``content``; ``params`` are further ``Request`` fields."""
        req = _new_request(prompt=content, max_tokens=max_tokens, stream=stream, **params)
        return self.stream(req) if stream else await self.generate(req)

    async def chat_completion(
        self,
        messages: Sequence[ChatMessage | dict[str, Any]],
        *,
        max_tokens: int = 64,
        stream: bool = False,
        **params: Any,
    ) -> Response | AsyncIterator[StreamEvent]:
        """Chat completion over ``messages`` (the model's chat template is applied)."""
        req = _new_request(messages=list(messages), max_tokens=max_tokens, stream=stream, **params)
        return self.stream(req) if stream else await self.generate(req)

    async def batch_completion(
        self, contents: Sequence[str], *, max_tokens: int = 64, **params: Any
    ) -> list[Response]:
        """Completions of several prompts, run concurrently."""
        reqs = [_new_request(prompt=c, max_tokens=max_tokens, **params) for c in contents]
        return await self.generate_batch(reqs)

    async def batch_chat_completion(
        self,
        conversations: Sequence[Sequence[ChatMessage | dict[str, Any]]],
        *,
        max_tokens: int = 64,
        **params: Any,
    ) -> list[Response]:
        """Chat completions of several conversations, run concurrently."""
        reqs = [
            _new_request(messages=list(m), max_tokens=max_tokens, **params) for m in conversations
        ]
        return await self.generate_batch(reqs)

    # --- internals -------------------------------------------------------------------------------
    async def _prompt(self, request: Request) -> tuple[str, str]:
        """The text vLLM gets, and the GenAI operation name."""
        if request.prompt:
            return request.prompt, sc.OP_TEXT_COMPLETION
        if request.messages:
            if self._tokenizer is None:
                self._tokenizer = await _get_tokenizer(self.llm)
            msgs = [m.model_dump(exclude_none=True) for m in request.messages]
            text = self._tokenizer.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=True
            )
            return str(text), sc.OP_CHAT
        raise invalid("prompt", "either prompt or messages must be given")

    def _new_record(self, request: Request, operation: str, stream: bool) -> RequestRecord:
        tp = traceparent_from_metadata(request.metadata)
        meta = request.metadata or {}
        sp = request.sampling_params
        rec = RequestRecord(
            request_id=request.request_id,
            trace_id=request.trace_id,
            engine_id=self.engine_id,
            model=request.model or self.model_name,
            operation=operation,
            stream=stream,
            max_tokens=request.max_tokens,
            temperature=sp.temperature if sp is not None else request.temperature,
            top_p=sp.top_p if sp is not None else request.top_p,
            top_k=sp.top_k if sp is not None and sp.top_k > 0 else None,
            seed=sp.seed if sp is not None else None,
            arrival_time=time.time(),
        )
        if tp is not None:
            rec.otel_trace_id = int(tp.trace_id, 16)
            rec.parent_span_id = int(tp.span_id, 16)
            rec.parent_sampled = tp.sampled
            ts = meta.get(TRACESTATE_KEY)
            rec.tracestate = ts if isinstance(ts, str) else None
        elif (ctx := trace.get_current_span().get_span_context()).is_valid:
            # Called in-process under an application's span (@trace_protocol, a notebook's own
            # span): join its trace, as a traceparent from a client would.
            rec.otel_trace_id = ctx.trace_id
            rec.parent_span_id = ctx.span_id
            rec.parent_sampled = ctx.trace_flags.sampled
            rec.tracestate = ctx.trace_state.to_header() or None
        else:
            rec.otel_trace_id = int(otel_trace_id(request.trace_id), 16)
        return rec

    async def _run(
        self, request: Request | dict[str, Any], *, stream: bool, on_token: TokenCallback | None
    ) -> AsyncIterator[StreamEvent]:
        req = request if isinstance(request, Request) else validate(Request, request)
        tel: TelemetryPort = self.telemetry
        try:
            prompt, operation = await self._prompt(req)
            _check_text(prompt, "messages" if operation == sc.OP_CHAT else "prompt")
            params = _sampling_params(sampling_kwargs(req), stream)
        except ProtocolValidationError as exc:
            self._reject(req, exc)
            raise
        rec = self._new_record(req, operation, stream)
        if tel.capture_content:
            rec.input_messages = _input_messages(req)
        eid = self.engine_id
        yield StreamEventStart(request_id=req.request_id, trace_id=req.trace_id, engine_id=eid)
        token_ids: list[int] = []
        text_parts: list[str] = []
        itl_ms: list[float] = []
        last_t = 0.0
        stats: Any = None
        prompt_ids: Any = None
        cached = 0
        vllm_reason: str | None = None
        error: Error | None = None
        finished = False
        gen = self.llm.generate(prompt, params, req.request_id)
        try:
            async for out in gen:
                stats = out.metrics
                comp = out.outputs[0] if out.outputs else None
                if out.prompt_token_ids is not None:
                    prompt_ids = out.prompt_token_ids
                if out.finished:
                    finished = True
                    if self.on_request_output is not None:
                        with contextlib.suppress(Exception):
                            self.on_request_output(out)
                    cached = int(out.num_cached_tokens or 0)
                    if comp is not None:
                        vllm_reason = comp.finish_reason
                if comp is None or not comp.token_ids:
                    continue
                new_ids = list(comp.token_ids)
                token_ids.extend(new_ids)
                text_parts.append(comp.text)
                if stream:
                    now = time.monotonic()
                    if last_t:
                        # Tokens that arrive in one output share its arrival time.
                        itl_ms.append((now - last_t) * 1000.0)
                        itl_ms.extend([0.0] * (len(new_ids) - 1))
                    else:
                        itl_ms.extend([0.0] * (len(new_ids) - 1))
                    last_t = now
                    delta = StreamEventDelta(
                        request_id=req.request_id,
                        trace_id=req.trace_id,
                        engine_id=eid,
                        content=comp.text,
                        content_tokens=new_ids,
                    )
                    if on_token is not None:
                        on_token(delta)
                    yield delta
        except (asyncio.CancelledError, GeneratorExit):
            rec.cancelled = True
            rec.finish_reason = "abort"
            self._finish(rec, stats, prompt_ids, cached, len(token_ids), "".join(text_parts))
            raise
        except ProtocolValidationError as exc:
            self._reject(req, exc)
            raise
        except Exception as exc:
            if _is_client_error(exc):  # e.g. a prompt longer than the context
                param = getattr(exc, "parameter", None)
                field = "prompt" if param in (None, "input_tokens", "input_text") else str(param)
                err = invalid(field, str(exc))
                self._reject(req, err)
                raise err from exc
            error = Error.from_exception(exc)
            error.code = ErrorCode.UNAVAILABLE
            rec.error_type = type(exc).__name__
            rec.error_code = error.code.value
            _log.warning("sagellm-obs: request %s failed: %s", req.request_id, exc)
        finally:
            # Closing vLLM's generator aborts the request if it is still running.
            with contextlib.suppress(BaseException):
                await gen.aclose()
        if vllm_reason == "abort":
            rec.cancelled = True
        rec.finish_reason = "error" if error else (vllm_reason or ("stop" if finished else "abort"))
        text = "".join(text_parts)
        metrics = self._finish(rec, stats, prompt_ids, cached, len(token_ids), text, itl_ms)
        yield StreamEventEnd(
            request_id=req.request_id,
            trace_id=req.trace_id,
            engine_id=eid,
            prompt_tokens=rec.prompt_tokens,
            content=text,
            output_tokens=token_ids,
            finish_reason=protocol_finish_reason(rec.finish_reason),
            metrics=metrics,
            error=error,
        )

    def _finish(
        self,
        rec: RequestRecord,
        stats: Any,
        prompt_ids: Any,
        cached: int,
        n_out: int,
        text: str,
        itl_ms: list[float] | None = None,
    ) -> Any:
        """Fill the record, hand it to telemetry, and return the protocol Metrics."""
        tel: TelemetryPort = self.telemetry
        try:
            fill_timing(rec, stats, self.sink.pop_finished(rec.request_id), time.time())
            rec.prompt_tokens = len(prompt_ids) if prompt_ids is not None else 0
            rec.output_tokens = n_out
            rec.cached_tokens = cached
            rec.prompt_token_ids = prompt_ids
            # KV written for this request: the prompt plus every output token but the last.
            rec.kv_tokens = rec.prompt_tokens + max(n_out - 1, 0) if rec.prompt_tokens else 0
            rec.kv_bytes = rec.kv_tokens * self._kv_bytes_per_token
            if tel.capture_content:
                rec.output_messages = json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": text}],
                            # The GenAI schema requires it; Phoenix drops messages without.
                            "finish_reason": rec.finish_reason or "",
                        }
                    ]
                )
            metrics = build_metrics(
                rec,
                tel.anchor,
                peak_mem_mb=tel.peak_mem_mb(),
                itl_ms=itl_ms,
                component_trace=self._component,
            )
        finally:
            tel.submit_request(rec)
        return metrics

    def _reject(self, req: Request, exc: ProtocolValidationError) -> None:
        """Record a rejected request as an error span (no phases)."""
        with contextlib.suppress(Exception):
            rec = self._new_record(req, sc.OP_TEXT_COMPLETION, req.stream)
            rec.error_type = exc.code.value
            rec.error_code = exc.code.value
            rec.finish_reason = "error"
            rec.e2e = max(time.time() - rec.arrival_time, 0.0)
            self.telemetry.submit_request(rec)


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


def _is_client_error(exc: BaseException) -> bool:
    """vLLM's request errors: ``ValueError`` and its ``VLLMClientError`` family (HTTP 4xx)."""
    if isinstance(exc, ValueError):
        return True
    return any(cls.__name__ == "VLLMClientError" for cls in type(exc).__mro__)


def _new_request(**fields: Any) -> Request:
    rid = fields.pop("request_id", None) or f"req-{uuid.uuid4().hex[:12]}"
    fields.setdefault("trace_id", rid)
    return validate(Request, {"request_id": rid, **fields})


_INT64 = range(-(2**63), 2**63)


def _check_text(text: str, field: str) -> None:
    """Text vLLM's tokenizer cannot encode (a lone surrogate) is the request's fault."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(field, "text is not valid Unicode (a lone surrogate)") from None


def _sampling_params(kwargs: dict[str, Any], stream: bool) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    for key, value in kwargs.items():  # vLLM cannot pass larger integers to its engine core
        if isinstance(value, int) and value not in _INT64:
            field = key if key == "max_tokens" else f"sampling_params.{key}"
            raise invalid(field, "must fit in a signed 64-bit integer")
    try:
        return SamplingParams(output_kind=RequestOutputKind.DELTA, **kwargs)
    except Exception as exc:  # ValueError, TypeError, or VLLMValidationError (not a ValueError)
        if isinstance(exc, TypeError) or _is_client_error(exc):
            raise invalid("sampling_params", str(exc)) from exc
        raise


def _input_messages(req: Request) -> str:
    if req.messages:
        msgs = [
            {"role": m.role, "parts": [{"type": "text", "content": m.content}]}
            for m in req.messages
        ]
    else:
        msgs = [{"role": "user", "parts": [{"type": "text", "content": req.prompt}]}]
    return json.dumps(msgs)


async def _get_tokenizer(llm: Any) -> Any:
    getter = getattr(llm, "get_tokenizer", None)
    if getter is not None:
        tok = getter()
        if asyncio.iscoroutine(tok):
            tok = await tok
        return tok
    return llm.tokenizer


def _kv_bytes_per_token(llm: Any) -> int:
    """Bytes of K and V one token occupies across all layers, from vLLM's model config."""
    try:
        vc = llm.vllm_config
        mc, pc = vc.model_config, vc.parallel_config
        import torch

        itemsize = torch.empty((), dtype=mc.dtype).element_size()
        return int(
            2 * mc.get_num_layers(pc) * mc.get_num_kv_heads(pc) * mc.get_head_size() * itemsize
        )
    except Exception:
        return 0


def _vllm_version() -> str:
    try:
        import vllm

        return str(vllm.__version__)
    except Exception:
        return "unknown"
