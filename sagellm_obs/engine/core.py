"""``InstrumentedEngine``: vLLM's ``AsyncLLM`` with protocol requests in and true telemetry out.

The engine talks to its telemetry through :class:`~sagellm_obs.telemetry.TelemetryPort` only: one
record per finished request, one per engine step (from the stat logger), and the clock anchor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from sagellm_obs import semconv as sc
from sagellm_obs.engine import gc_heap, vllm_env, vllm_requests
from sagellm_obs.engine.config import EngineConfig, resolve_model, with_overrides
from sagellm_obs.engine.convert import (
    aborted_error,
    build_metrics,
    fill_timing,
    invalid,
    protocol_finish_reason,
    sampling_kwargs,
)
from sagellm_obs.engine.flight import Flight, Outputs
from sagellm_obs.engine.kv_events import KVEventConsumer
from sagellm_obs.engine.llama_calls import LlamaStackCalls
from sagellm_obs.engine.outputs import RequestOutputs, delta_event, delta_head
from sagellm_obs.engine.quiet import engine_start_output
from sagellm_obs.engine.request_record import input_messages, new_record, output_messages
from sagellm_obs.engine.stat_logger import StepSink, stat_logger_factory
from sagellm_obs.engine.vllm_calls import (
    check_text,
    get_tokenizer,
    is_client_error,
    kv_bytes_per_token,
    max_model_len,
    sampling_params,
    scoped_env,
    vllm_tracing_env,
    vllm_version,
)
from sagellm_obs.protocol import (
    Error,
    ErrorCode,
    Metrics,
    ProtocolValidationError,
    Request,
    Response,
    StreamEvent,
    StreamEventDelta,
    StreamEventEnd,
    StreamEventStart,
    validate,
)
from sagellm_obs.telemetry import RequestRecord, Telemetry, TelemetryPort
from sagellm_obs.telemetry import configure as configure_telemetry
from sagellm_obs.telemetry import current as current_telemetry

_log = logging.getLogger(__name__)

TokenCallback = Callable[[StreamEventDelta], Any]


class InstrumentedEngine(LlamaStackCalls):
    """An instrumented vLLM engine. Create it with :meth:`start` inside a running event loop.

    Each request becomes one SERVER span (back-dated to arrival, parented on the request's
    ``traceparent``) with ``queue``/``prefill``/``decode`` children, GenAI + vLLM + ``sagellm.*``
    attributes and metric points; the protocol ``Metrics`` it returns hold the same numbers.
    """

    kv_events: KVEventConsumer | None = None
    """The KV cache event consumer when ``config.kv_events`` is on (set by :meth:`start`)."""
    _froze_gc = False  # holds a gc_heap.freeze() (config.freeze_gc) until shutdown
    _cached_env = False  # holds a vllm_env.hold() (config.cache_vllm_env) until shutdown

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
        self._kv_bytes_per_token = kv_bytes_per_token(llm)
        self._component = ["sagellm-obs", f"vllm:{vllm_version()}"]
        self._tokenizer: Any = None
        #: Called with vLLM's final ``RequestOutput`` of each request (for cross-checks in tests
        #: and notebooks); must be cheap and must not raise.
        self.on_request_output: Callable[[Any], None] | None = None
        #: vLLM traces requests itself (``otlp_traces_endpoint``): each request's trace context
        #: goes to vLLM as ``trace_headers``, so its ``llm_request`` span is our span's child.
        self.trace_vllm = False

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
        cfg = with_overrides(config or EngineConfig(), overrides)
        tel: TelemetryPort = telemetry or current_telemetry() or configure_telemetry()
        pinned = telemetry
        start_env = {}
        if cfg.in_process is not None:
            start_env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if cfg.in_process else "1"
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        sink = StepSink(
            (lambda: pinned) if pinned is not None else current_telemetry, tel.engine_id
        )
        with engine_start_output(cfg.log_level) as output_args, scoped_env(start_env):
            model_path = await asyncio.to_thread(resolve_model, cfg.model)

            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM

            # An engine started earlier (ours, or vLLM's in-process EngineCore) may have cached
            # vLLM's env settings: this one reads them as they are now.
            vllm_env.read_afresh()

            engine_kw = cfg.engine_args(model_path)
            receiver = tel.vllm_spans
            if receiver is not None and not engine_kw.get("otlp_traces_endpoint"):
                engine_kw["otlp_traces_endpoint"] = receiver.endpoint
            ranks = int(engine_kw.get("data_parallel_size") or 1)
            consumer = _kv_consumer(pinned, tel.engine_id, ranks) if cfg.kv_events else None
            if consumer is not None:
                engine_kw["kv_events_config"] = consumer.vllm_config()
            args = AsyncEngineArgs(**{**output_args, **engine_kw})
            started = time.time()
            try:
                with vllm_tracing_env(engine_kw.get("otlp_traces_endpoint"), receiver is not None):
                    llm = AsyncLLM.from_engine_args(args, stat_loggers=[stat_logger_factory(sink)])
            except BaseException:
                if consumer is not None:
                    consumer.close(drain=False)
                raise
        engine = cls(llm, cfg, pinned, sink, model_path)
        engine.kv_events = consumer
        engine.trace_vllm = bool(engine_kw.get("otlp_traces_endpoint"))
        if cfg.freeze_gc:
            gc_heap.freeze()
            engine._froze_gc = True
        if cfg.cache_vllm_env:
            vllm_env.hold()
            engine._cached_env = True
        if receiver is not None:
            receiver.set_default(tel.take_spans)  # vLLM's start-up spans
        tel.peak_mem_mb(sample=True)  # the model is loaded: count it in the peak
        tel.annotate_run(
            model=engine.model_name,
            model_path=model_path,
            engine_args=dict(engine_kw.items()),
            engine_start_seconds=round(time.time() - started, 3),
            kv_bytes_per_token=engine._kv_bytes_per_token,
        )
        return engine

    def shutdown(self) -> None:
        """Stop vLLM and flush telemetry (the telemetry itself stays configured).

        Call it from the engine's event-loop thread: vLLM cancels its output task there.
        """
        llm, self.llm = self.llm, None
        consumer, self.kv_events = self.kv_events, None
        if consumer is not None:
            consumer.drain(timeout=5.0)  # what the last steps published, before vLLM closes
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.shutdown()
                # AsyncLLM.__del__ calls shutdown() again, which fails at interpreter exit.
                llm.shutdown = _noop
        if consumer is not None:
            consumer.close()
        if self._froze_gc:
            self._froze_gc = False
            gc_heap.release()
        if self._cached_env:
            self._cached_env = False
            vllm_env.release()
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
        # The request's outputs are read in this coroutine's own frame; the request asks vLLM for
        # its final output only (FINAL_ONLY, as vLLM's server does for a request not streamed).
        f = await self._launch(request, stream=False)
        outs = f.outs
        async with Outputs(self, f) as q:
            while q is not None and not outs.finished:
                outs.add(q.get_nowait() or await q.get())
        end = self._end(f.rec, f.outs, f.error, f.ids)
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

    async def stream(
        self, request: Request | dict[str, Any], *, on_token: TokenCallback | None = None
    ) -> AsyncIterator[StreamEvent]:
        """Stream ``StreamEventStart``, one ``StreamEventDelta`` per engine output, then ``End``.

        ``on_token`` is called with each delta. Closing the iterator early (or cancelling the
        task) aborts the vLLM request, recorded as cancelled.
        """
        f = await self._launch(request, stream=True)
        yield StreamEventStart(**f.ids)
        outs = f.outs
        add = outs.add
        head = delta_head(f.ids)
        async with Outputs(self, f) as q:
            while q is not None and not outs.finished:
                comp = add(q.get_nowait() or await q.get())
                if comp is not None:
                    tokens = comp.token_ids
                    delta = delta_event(
                        head, comp.text, tokens if type(tokens) is list else list(tokens)
                    )
                    if on_token is not None:
                        on_token(delta)
                    yield delta
        yield self._end(f.rec, f.outs, f.error, f.ids)

    async def generate_batch(self, requests: Sequence[Request | dict[str, Any]]) -> list[Response]:
        """Run requests concurrently; responses in input order."""
        return list(await asyncio.gather(*(self.generate(r) for r in requests)))

    async def abort(self, request_id: str) -> None:
        """Abort a running request: its End (or Response) has ``finish_reason='error'`` with an
        ``Error`` saying it was aborted; telemetry records ``abort``, marked cancelled."""
        await self.llm.abort(request_id)

    # --- one request ---------------------------------------------------------------------------
    async def _launch(self, request: Request | dict[str, Any], *, stream: bool) -> Flight:
        """A validated, admitted request and its telemetry record (or a rejection)."""
        req = request if isinstance(request, Request) else validate(Request, request)
        prompt, params, rec = await self._admit(req, stream)
        ids = {"request_id": req.request_id, "trace_id": req.trace_id, "engine_id": self.engine_id}
        return Flight(req, prompt, params, rec, ids, RequestOutputs(stream, self._final_output))

    async def _add(self, f: Flight) -> Any:
        """Add the request to vLLM; what hands over its outputs (``vllm_requests.add_request``)."""
        headers = self.telemetry.vllm_trace_headers(f.rec) if self.trace_vllm else None
        session = None
        params = f.params
        if self.kv_events is not None:
            # Blocks vLLM stores are reported with the request as their session; its
            # prefix-cache hits are reported too ("full"), which is how reuse is counted.
            params.extra_args = {**(params.extra_args or {}), "kv_cache_report_mode": "full"}
            session = f.req.request_id
        return await vllm_requests.add_request(
            self.llm, f.req.request_id, f.prompt, params, trace_headers=headers, session_id=session
        )

    def _interrupted(self, f: Flight, exc: BaseException) -> Error | None:
        """What an exception out of vLLM's outputs means: the request's error, or None when the
        caller must re-raise it (cancelled, closed early, rejected); recorded either way."""
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            f.rec.cancelled = True
            f.rec.finish_reason = "abort"
            self.telemetry.forget_vllm_span(f.rec)  # vLLM does not trace aborted requests
            self._finish(f.rec, f.outs, with_itl=False)
            return None
        if isinstance(exc, ProtocolValidationError):
            self._reject(f.req, exc)
            return None
        if isinstance(exc, Exception):
            return self._failed(f.req, f.rec, exc)
        return None

    async def _admit(self, req: Request, stream: bool) -> tuple[str, Any, RequestRecord]:
        """The prompt, vLLM's sampling parameters and the telemetry record; or a rejection."""
        try:
            self._check_max_tokens(req.max_tokens)
            prompt, operation = await self._prompt(req)
            check_text(prompt, "messages" if operation == sc.OP_CHAT else "prompt")
            params = sampling_params(sampling_kwargs(req), final_only=not stream)
        except ProtocolValidationError as exc:
            self._reject(req, exc)
            raise
        rec = self._new_record(req, operation, stream)
        if self.telemetry.capture_content:
            rec.input_messages = input_messages(req)
        return prompt, params, rec

    def _check_max_tokens(self, max_tokens: int) -> None:
        """Refuse ``max_tokens`` past the context, as vLLM's server does (not a silent cap).

        vLLM's OpenAI server answers 400 when ``max_tokens`` exceeds ``max_model_len``
        (``TokenizeParams``: "max_tokens=N cannot be greater than max_model_len=M"); a request
        that fits alone but not with its prompt is capped to what is left, there as here.
        """
        limit = max_model_len(self.llm) or self.config.max_model_len
        if max_tokens > limit:
            raise invalid(
                "max_tokens",
                f"max_tokens={max_tokens} cannot be greater than max_model_len={limit}. "
                "Please request fewer output tokens.",
            )

    def _failed(self, req: Request, rec: RequestRecord, exc: Exception) -> Error:
        """The error a failed request ends with; vLLM's client errors are raised as rejections."""
        if is_client_error(exc):  # e.g. a prompt longer than the context
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
        return error

    def _end(
        self, rec: RequestRecord, outs: RequestOutputs, error: Error | None, ids: dict[str, str]
    ) -> StreamEventEnd:
        """The request's last event, its record handed to telemetry."""
        reason = outs.vllm_reason or ("stop" if outs.finished else "abort")
        if reason == "abort" and error is None:
            # Aborted inside vLLM (``abort()``, a stop from elsewhere): the protocol has no
            # "abort" finish reason, so the End says "error" and why; never a normal "stop".
            rec.cancelled = True
            self.telemetry.forget_vllm_span(rec)
            error = aborted_error()
        rec.finish_reason = "abort" if rec.cancelled else ("error" if error else reason)
        metrics = self._finish(rec, outs, with_itl=True)
        return StreamEventEnd(
            **ids,
            prompt_tokens=rec.prompt_tokens,
            content=outs.text,
            output_tokens=outs.token_ids,
            finish_reason=protocol_finish_reason(rec.finish_reason),
            metrics=metrics,
            error=error,
        )

    def _finish(self, rec: RequestRecord, outs: RequestOutputs, *, with_itl: bool) -> Metrics:
        """Fill the record, hand it to telemetry, and return the protocol Metrics."""
        tel: TelemetryPort = self.telemetry
        try:
            finished, rec.engine_idx = self.sink.pop_finished_on(rec.request_id)
            fill_timing(rec, outs.stats, finished, time.time())
            prompt_ids, n_out = outs.prompt_ids, len(outs.token_ids)
            rec.prompt_tokens = len(prompt_ids) if prompt_ids is not None else 0
            rec.output_tokens = n_out
            rec.cached_tokens = outs.cached_tokens
            rec.prompt_token_ids = prompt_ids
            # KV written for this request: the prompt plus every output token but the last.
            rec.kv_tokens = rec.prompt_tokens + max(n_out - 1, 0) if rec.prompt_tokens else 0
            rec.kv_bytes = rec.kv_tokens * self._kv_bytes_per_token
            if tel.capture_content:
                rec.output_messages = output_messages(outs.text, rec.finish_reason)
            metrics = build_metrics(
                rec,
                tel.anchor,
                peak_mem_mb=tel.peak_mem_mb(),
                itl_ms=outs.itl_ms if with_itl else None,
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

    def _final_output(self, out: Any) -> None:
        if self.on_request_output is not None:  # read per request: it may be set at any time
            self.on_request_output(out)

    def _new_record(self, request: Request, operation: str, stream: bool) -> RequestRecord:
        return new_record(
            request,
            operation=operation,
            stream=stream,
            engine_id=self.engine_id,
            model=self.model_name,
        )

    async def _prompt(self, request: Request) -> tuple[str, str]:
        """The text vLLM gets, and the GenAI operation name."""
        if request.prompt:
            return request.prompt, sc.OP_TEXT_COMPLETION
        if request.messages:
            if self._tokenizer is None:
                self._tokenizer = await get_tokenizer(self.llm)
            msgs = [m.model_dump(exclude_none=True) for m in request.messages]
            text = self._tokenizer.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=True
            )
            return str(text), sc.OP_CHAT
        raise invalid("prompt", "either prompt or messages must be given")


def _kv_consumer(pinned: Telemetry | None, engine_id: str, ranks: int) -> KVEventConsumer:
    """A consumer of every data-parallel rank, writing to the run folder of the telemetry in use."""

    def write(records: Sequence[Mapping[str, Any]]) -> None:
        tel: TelemetryPort | None = pinned if pinned is not None else current_telemetry()
        if tel is not None:
            tel.write_kv_events(records)

    return KVEventConsumer(write, engine_id=engine_id, ranks=ranks)


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


__all__ = ["EngineConfig", "InstrumentedEngine", "TokenCallback", "resolve_model"]
