"""A request record's spans: the SERVER span, its ``queue``/``prefill``/``decode`` children and the
first-token event.

Two ways to make them, with the same result:

* **Direct** (the usual case): ids and sampling decisions are computed here, the OTLP/JSON text
  for the local store is formatted straight from the record (:mod:`sagellm_obs.store.otlp_text`),
  and only where another exporter of ours is configured (OTLP, ``AdvancedOptions.span_exporters``)
  are ``ReadableSpan`` objects built and handed to its processor's ``on_end``. Creating SDK spans
  through ``Tracer.start_span`` costs several times more than the whole store line, mostly
  re-validating attributes this module built clean.
* **Through the SDK's Tracer**, exactly as any instrumentation would, whenever the direct way
  could differ from it: a span processor we did not add (a user's ``add_span_processor``), a
  sampler :mod:`sagellm_obs.telemetry.trace_sampling` does not cover, attribute length limits, the
  SDK's own span metrics, a disabled tracer, or more attributes than the count limit. Spans then
  reach the store through its span processor, as other code's spans do. The SDK internals this
  choice reads come from :mod:`~sagellm_obs.telemetry.sdk_private`; where one is missing, the
  Tracer it is.

Ids are drawn from the provider's id generator in the SDK's order (trace id, then one span id
per span); the protocol trace id still names root spans (see :mod:`sagellm_obs.telemetry.ids`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from sagellm_obs import semconv as sc
from sagellm_obs.protocol.timing import ClockAnchor
from sagellm_obs.store import otlp_text as text
from sagellm_obs.store.otlp_text import SpanLines
from sagellm_obs.telemetry import sdk_private
from sagellm_obs.telemetry.attributes import request_attributes, request_attributes_text
from sagellm_obs.telemetry.ids import TraceIdOverride
from sagellm_obs.telemetry.records import RequestRecord
from sagellm_obs.telemetry.trace_sampling import SamplingPlan

_SAMPLED = TraceFlags.SAMPLED
_RANDOM = TraceFlags.RANDOM_TRACE_ID
_UNSET = Status(StatusCode.UNSET)
_NO_EVENT_ATTRIBUTES = BoundedAttributes(immutable=True)
_PHASES = (sc.SPAN_QUEUE, sc.SPAN_PREFILL, sc.SPAN_DECODE)  # between consecutive stamps


class RequestSpans:
    """Turns request records into spans (see the module docstring for the two ways).

    Args:
        provider: The tracer provider of this telemetry.
        tracer: Its tracer for our scope.
        ids: The provider's id generator.
        anchor: Converts vLLM's monotonic stamps to epoch time.
        store_lines: Where the local store's span lines go, or None (store off).
        store_processor: The store's span processor on ``provider`` (other code's spans).
        own_processors: The other span processors :func:`configure` added (OTLP, extra
            exporters); they only export, so they can be handed ``ReadableSpan`` objects.
    """

    def __init__(
        self,
        provider: TracerProvider,
        tracer: trace.Tracer,
        ids: TraceIdOverride,
        anchor: ClockAnchor,
        *,
        store_lines: SpanLines | None = None,
        store_processor: SpanProcessor | None = None,
        own_processors: Sequence[SpanProcessor] = (),
    ) -> None:
        self._provider = provider
        self._tracer = tracer
        self._ids = ids
        self.anchor = anchor
        self.store_lines = store_lines
        self._store_processor = store_processor
        self._own = (*own_processors, store_processor)
        self._processors: Any = None
        self._sampler: Any = None
        self._plan: SamplingPlan | None = None
        self._ours_only = False
        self._export: tuple[SpanProcessor, ...] = ()
        self._max_attributes: int | None = None
        self._scope = sdk_private.instrumentation_scope(tracer)
        #: Whether records currently take the direct way.
        self.direct = False
        self.refresh()

    # --- which way ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Decide between the direct way and the Tracer (cheap; once per drain)."""
        procs = sdk_private.span_processors(self._provider)
        tracer = self._tracer
        sampler = getattr(tracer, "sampler", None)  # public on the SDK's Tracer
        if procs is not self._processors or sampler is not self._sampler:
            # add_span_processor replaces the tuple, so identity tells a change.
            self._processors, self._sampler = procs, sampler
            self._plan = SamplingPlan.of(sampler) if sampler is not None else None
            listed: tuple[SpanProcessor, ...] = tuple(procs) if procs is not None else ()
            self._ours_only = procs is not None and all(
                any(p is o for o in self._own) for p in listed
            )
            self._export = tuple(p for p in listed if p is not self._store_processor)
        self.direct = self._ours_only and self._plan is not None and self._plain_tracer(tracer)

    def _plain_tracer(self, tracer: Any) -> bool:
        """An enabled SDK tracer without its own span metrics or attribute length limits."""
        if not isinstance(tracer, sdk_trace.Tracer) or self._scope is None:
            return False
        if not sdk_private.tracer_enabled(tracer) or not sdk_private.tracer_metrics_off(tracer):
            return False
        limits = sdk_private.span_limits(tracer)
        if limits is None or limits.max_attribute_length is not None:
            return False
        if limits.max_span_attribute_length is not None:
            return False
        if limits.max_events is not None and limits.max_events < 1:
            return False
        self._max_attributes = limits.max_span_attributes
        return True

    # --- per request ----------------------------------------------------------------------------
    def record(self, r: RequestRecord) -> SpanContext:
        """Make the record's spans; returns its SERVER span's context (for exemplars)."""
        if not self.direct:
            return self._through_tracer(r, request_attributes(r))
        attrs: dict[str, Any] | None = None
        attrs_text = ""
        if self._export or self.store_lines is None:
            attrs = request_attributes(r)  # for the ReadableSpans (or only counted)
            count = len(attrs)
        else:  # the store's text alone: no dict where the values are usual ones
            attrs_text, count = request_attributes_text(r)
        limit = self._max_attributes
        if limit is None or count <= limit:
            return self._direct(r, attrs, attrs_text)
        return self._through_tracer(r, attrs if attrs is not None else request_attributes(r))

    def _direct(
        self, r: RequestRecord, attrs: dict[str, Any] | None, attrs_text: str
    ) -> SpanContext:
        """The direct way; ``attrs`` is None when only the store's text was made."""
        plan = self._plan
        assert plan is not None
        ids = self._ids
        name = sc.request_span_name(r.operation, r.model)
        parent: SpanContext | None = None
        if r.parent_span_id:
            remote = _remote_parent(r)
            if remote.is_valid:
                parent = remote
        if parent is not None:
            trace_id = parent.trace_id
            sampled = plan.remote_sampled if parent.trace_flags.sampled else plan.remote_not_sampled
            trace_state = parent.trace_state
            random = parent.trace_flags.random_trace_id
        else:
            trace_id = (not r.parent_span_id and r.otel_trace_id) or ids.generate_trace_id()
            # The covered root samplers decide by the trace id alone (the SDK would pass attrs).
            sampled = plan.root(trace_id, name, attrs)
            trace_state = None
            random = ids.is_trace_id_random()
        flags = (_SAMPLED if sampled else 0) | (_RANDOM if random else 0)
        span_id = r.span_id or ids.generate_span_id()
        root = SpanContext(trace_id, span_id, False, TraceFlags(flags), trace_state)
        # ParentBased: children follow the (local) SERVER span's decision.
        child_sampled = plan.local_sampled if sampled else plan.local_not_sampled
        child_flags = (_SAMPLED if child_sampled else 0) | (flags & _RANDOM)
        phases = []
        stamps = (r.queued_ts, r.scheduled_ts, r.first_token_ts, r.last_token_ts)
        to_ns = self.anchor.to_epoch_ns
        new_span_id = ids.fresh_span_id
        last_ns = 0
        for k, phase in enumerate(_PHASES):
            begin, end = stamps[k], stamps[k + 1]
            if begin <= 0 or end <= 0:
                continue  # phase never reached (e.g. aborted while queued)
            # A phase starts where the one before it ended: each stamp is converted once.
            begin_ns = last_ns if k and stamps[k - 1] > 0 else to_ns(begin)
            last_ns = to_ns(end)
            phases.append((phase, new_span_id(), begin_ns, last_ns))
        if sampled or child_sampled:
            start_ns = int(r.arrival_time * 1e9)
            end_ns = start_ns + int(r.e2e * 1e9)
            ttft_ns = start_ns + int(r.ttft * 1e9) if r.first_token_ts else None
            if self.store_lines is not None:
                self._store(
                    r,
                    root,
                    name,
                    attrs_text or text.attributes_text(attrs or {}),
                    phases,
                    child_sampled,
                    child_flags,
                    parent,
                    start_ns,
                    end_ns,
                    ttft_ns,
                )
            if self._export:
                assert attrs is not None
                self._hand_over(
                    r,
                    root,
                    name,
                    attrs,
                    phases,
                    child_sampled,
                    child_flags,
                    parent,
                    start_ns,
                    end_ns,
                    ttft_ns,
                )
        return root

    def _store(
        self,
        r: RequestRecord,
        root: SpanContext,
        name: str,
        attrs_text: str,
        phases: list[tuple[str, int, int, int]],
        child_sampled: bool,
        child_flags: int,
        parent: SpanContext | None,
        start_ns: int,
        end_ns: int,
        ttft_ns: int | None,
    ) -> None:
        lines = self.store_lines
        assert lines is not None
        trace_id, span_id = root.trace_id, root.span_id
        state = root.trace_state.to_header() if root.trace_state else ""
        out: list[str] = []
        if child_sampled:
            flags = child_flags | text.FLAG_HAS_IS_REMOTE  # the parent is local
            out = text.child_spans_text(trace_id, state, span_id, flags, text.KIND_INTERNAL, phases)
        if root.trace_flags.sampled:
            flags = int(root.trace_flags) | text.FLAG_HAS_IS_REMOTE
            if parent is not None and parent.is_remote:
                flags |= text.FLAG_IS_REMOTE
            out.append(
                text.span_text(
                    trace_id,
                    span_id,
                    state,
                    parent.span_id if parent is not None else 0,
                    flags,
                    name,
                    text.KIND_SERVER,
                    start_ns,
                    end_ns,
                    attrs_text,
                    text.event_text(ttft_ns, sc.EVENT_FIRST_TOKEN) if ttft_ns is not None else "",
                    text.status_text(text.STATUS_ERROR, _error_status(r).description)
                    if r.error_type
                    else text.STATUS_UNSET,
                )
            )
        tracer: Any = self._tracer
        assert self._scope is not None
        lines.add(tracer.resource, self._scope, out)

    def _hand_over(
        self,
        r: RequestRecord,
        root: SpanContext,
        name: str,
        attrs: dict[str, Any],
        phases: list[tuple[str, int, int, int]],
        child_sampled: bool,
        child_flags: int,
        parent: SpanContext | None,
        start_ns: int,
        end_ns: int,
        ttft_ns: int | None,
    ) -> None:
        """``ReadableSpan`` objects, as the SDK would end them, to our exporting processors."""
        tracer: Any = self._tracer
        resource, info, scope = tracer.resource, tracer.instrumentation_info, self._scope
        spans = []
        if child_sampled:
            flags = TraceFlags(child_flags)
            for phase, sid, begin, end in phases:
                ctx = SpanContext(root.trace_id, sid, False, flags, root.trace_state)
                spans.append(
                    ReadableSpan(
                        phase,
                        ctx,
                        root,
                        resource,
                        None,
                        (),
                        (),
                        SpanKind.INTERNAL,
                        info,
                        _UNSET,
                        begin,
                        end,
                        scope,
                    )
                )
        if root.trace_flags.sampled:
            events: tuple[Event, ...] = ()
            if ttft_ns is not None:
                events = (Event(sc.EVENT_FIRST_TOKEN, _NO_EVENT_ATTRIBUTES, ttft_ns),)
            status = _error_status(r) if r.error_type else _UNSET
            spans.append(
                ReadableSpan(
                    name,
                    root,
                    parent,
                    resource,
                    attrs,
                    events,
                    (),
                    SpanKind.SERVER,
                    info,
                    status,
                    start_ns,
                    end_ns,
                    scope,
                )
            )
        for span in spans:
            for processor in self._export:
                processor.on_end(span)

    def _through_tracer(self, r: RequestRecord, attrs: dict[str, Any]) -> SpanContext:
        """The SDK's way: ``Tracer.start_span`` for every span (see the module docstring)."""
        anchor, tracer, ids = self.anchor, self._tracer, self._ids
        start_ns = int(r.arrival_time * 1e9)
        parent_ctx = None
        if r.parent_span_id:
            parent_ctx = trace.set_span_in_context(NonRecordingSpan(_remote_parent(r)))
        elif r.otel_trace_id:
            ids.next_trace_id = r.otel_trace_id
        ids.next_span_id = r.span_id
        try:
            span = tracer.start_span(
                sc.request_span_name(r.operation, r.model),
                context=parent_ctx,
                kind=SpanKind.SERVER,
                attributes=attrs,
                start_time=start_ns,
            )
        finally:
            ids.next_trace_id = 0
            ids.next_span_id = 0
        if r.first_token_ts:
            span.add_event(
                sc.EVENT_FIRST_TOKEN, timestamp=start_ns + int(r.ttft * 1e9), attributes=None
            )
        if r.error_type:
            span.set_status(_error_status(r))
        child_ctx = trace.set_span_in_context(span)
        for name, begin, end in (
            (sc.SPAN_QUEUE, r.queued_ts, r.scheduled_ts),
            (sc.SPAN_PREFILL, r.scheduled_ts, r.first_token_ts),
            (sc.SPAN_DECODE, r.first_token_ts, r.last_token_ts),
        ):
            if begin <= 0 or end <= 0:
                continue
            child = tracer.start_span(
                name,
                context=child_ctx,
                kind=SpanKind.INTERNAL,
                start_time=anchor.to_epoch_ns(begin),
            )
            child.end(end_time=anchor.to_epoch_ns(end))
        span.end(end_time=start_ns + int(r.e2e * 1e9))
        return span.get_span_context()


def _error_status(r: RequestRecord) -> Status:
    return Status(StatusCode.ERROR, r.error_type)


def _remote_parent(r: RequestRecord) -> SpanContext:
    return SpanContext(
        trace_id=r.otel_trace_id,
        span_id=r.parent_span_id,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if r.parent_sampled else 0),
        trace_state=TraceState.from_header([r.tracestate]) if r.tracestate else None,
    )
