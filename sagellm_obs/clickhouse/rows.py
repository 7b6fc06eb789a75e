"""OTLP/JSON lines and step records → rows of the exporter's tables, shaped as it shapes them.

The OpenTelemetry Collector ClickHouse exporter writes every attribute value as a string (ints in
decimal, doubles as Go's JSON-style shortest text, booleans ``true``/``false``, arrays and maps as
JSON), the span kind and status code as words (``Server``, ``Unset``: pdata's ``String()``), ids
as lowercase hex, ``Duration`` as end − start in nanoseconds, the resource's ``service.name`` in
``ServiceName``, and events and links as parallel arrays of a Nested column. Engine steps become
the OTel metrics they are: gauges (running, waiting, KV usage) and delta sums (the per-step
counts), one point per step, with ``sagellm.step`` and the exact step time as attributes (the
exporter's metric tables keep whole seconds, and steps come many a second).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sagellm_obs import semconv as sc
from sagellm_obs.frames.wire import ENUM_NAMES

SPAN_KIND_WORDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_WORDS = ("Unset", "Ok", "Error")

STEP_ATTRIBUTE = sc.STEP_POINT_INDEX
"""Metric point attribute: the engine step a point belongs to (only step points carry it)."""
STEP_TIME_ATTRIBUTE = sc.STEP_POINT_TIME_UNIX_NANO
"""Metric point attribute: the step's exact time (epoch ns); the tables keep whole seconds."""

# Step record key → (metric name, kind, unit); docs/semconv.md has the table.
STEP_METRICS: Mapping[str, tuple[str, str, str]] = {
    sc.STEP_RUNNING: (sc.M_RUNNING.name, "gauge", sc.M_RUNNING.unit),
    sc.STEP_WAITING: (sc.M_WAITING.name, "gauge", sc.M_WAITING.unit),
    sc.STEP_KV_USAGE: (sc.M_KV_USAGE.name, "gauge", sc.M_KV_USAGE.unit),
    sc.STEP_PREFIX_QUERIES: (sc.M_PREFIX_QUERIES.name, "sum", sc.M_PREFIX_QUERIES.unit),
    sc.STEP_PREFIX_HITS: (sc.M_PREFIX_HITS.name, "sum", sc.M_PREFIX_HITS.unit),
    sc.STEP_PROMPT_TOKENS: (sc.M_PROMPT_TOKENS.name, "sum", sc.M_PROMPT_TOKENS.unit),
    sc.STEP_CACHED_PROMPT_TOKENS: (sc.STEP_POINT_CACHED_PROMPT_TOKENS, "sum", sc.UNIT_TOKENS),
    sc.STEP_GENERATION_TOKENS: (sc.M_GENERATION_TOKENS.name, "sum", sc.M_GENERATION_TOKENS.unit),
    sc.STEP_PREEMPTIONS: (sc.M_PREEMPTIONS.name, "sum", sc.M_PREEMPTIONS.unit),
    sc.STEP_FINISHED: (sc.STEP_POINT_FINISHED, "sum", sc.UNIT_REQUESTS),
}
DELTA, CUMULATIVE = 1, 2


def double_text(x: float) -> str:
    """A double as pdata's ``AsString`` writes it (ES6/JSON number text)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    if 1e-6 <= abs(x) < 1e21:
        text = format(Decimal(repr(x)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa, _, exponent = repr(x).partition("e")
    sign = exponent[0] if exponent[:1] in "+-" else "+"
    return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"


def raw_value(value: Mapping[str, Any]) -> Any:
    """An OTLP/JSON AnyValue as a plain Python value (for JSON rendering of arrays and maps)."""
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [raw_value(v) for v in (value["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in value:
        kvs = (value["kvlistValue"] or {}).get("values") or []
        return {kv["key"]: raw_value(kv.get("value") or {}) for kv in kvs}
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def value_text(value: Mapping[str, Any] | None) -> str:
    """An OTLP/JSON AnyValue as the string the exporter stores in its attribute maps."""
    if not value:
        return ""
    if "stringValue" in value:
        return str(value["stringValue"])
    if "intValue" in value:
        return str(int(value["intValue"]))
    if "doubleValue" in value:
        raw = value["doubleValue"]
        return double_text(float(raw)) if raw is not None else ""
    if "boolValue" in value:
        return "true" if value["boolValue"] else "false"
    if "bytesValue" in value:  # OTLP/JSON carries bytes base64-encoded already
        return str(value["bytesValue"] or base64.b64encode(b"").decode())
    if "arrayValue" in value or "kvlistValue" in value:
        return json.dumps(raw_value(value), separators=(",", ":"), ensure_ascii=False)
    return ""


def attribute_map(kvs: Iterable[Mapping[str, Any]] | None) -> list[tuple[str, str]]:
    """An OTLP KeyValue list as the exporter's ``Map(String, String)`` entries (last key wins)."""
    out: dict[str, str] = {}
    for kv in kvs or ():
        out[str(kv.get("key", ""))] = value_text(kv.get("value"))
    return list(out.items())


def _int(value: Any) -> int:
    if isinstance(value, str) and value in ENUM_NAMES:
        return ENUM_NAMES[value]
    return int(value or 0)


def _hex(value: Any) -> str:
    return str(value or "").lower()


def span_rows(line: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    """The ``otel_traces`` rows of one OTLP/JSON ExportTraceServiceRequest."""
    for rs in line.get("resourceSpans") or ():
        resource = attribute_map((rs.get("resource") or {}).get("attributes"))
        service = dict(resource).get("service.name", "")
        for ss in rs.get("scopeSpans") or ():
            scope = ss.get("scope") or {}
            for span in ss.get("spans") or ():
                start = _int(span.get("startTimeUnixNano"))
                end = _int(span.get("endTimeUnixNano")) or start
                status = span.get("status") or {}
                events = span.get("events") or ()
                links = span.get("links") or ()
                kind = _int(span.get("kind"))
                code = _int(status.get("code"))
                yield {
                    "Timestamp": start,
                    "TraceId": _hex(span.get("traceId")),
                    "SpanId": _hex(span.get("spanId")),
                    "ParentSpanId": _hex(span.get("parentSpanId")),
                    "TraceState": str(span.get("traceState") or ""),
                    "SpanName": str(span.get("name") or ""),
                    "SpanKind": SPAN_KIND_WORDS[kind] if 0 <= kind < 6 else "Unspecified",
                    "ServiceName": service,
                    "ResourceAttributes": resource,
                    "ScopeName": str(scope.get("name") or ""),
                    "ScopeVersion": str(scope.get("version") or ""),
                    "SpanAttributes": attribute_map(span.get("attributes")),
                    "Duration": max(end - start, 0),
                    "StatusCode": STATUS_WORDS[code] if 0 <= code < 3 else "Unset",
                    "StatusMessage": str(status.get("message") or ""),
                    "Events.Timestamp": [_int(e.get("timeUnixNano")) for e in events],
                    "Events.Name": [str(e.get("name") or "") for e in events],
                    "Events.Attributes": [attribute_map(e.get("attributes")) for e in events],
                    "Links.TraceId": [_hex(x.get("traceId")) for x in links],
                    "Links.SpanId": [_hex(x.get("spanId")) for x in links],
                    "Links.TraceState": [str(x.get("traceState") or "") for x in links],
                    "Links.Attributes": [attribute_map(x.get("attributes")) for x in links],
                }


def _exemplars(point: Mapping[str, Any]) -> dict[str, list[Any]]:
    ex = point.get("exemplars") or ()
    return {
        "Exemplars.FilteredAttributes": [attribute_map(e.get("filteredAttributes")) for e in ex],
        "Exemplars.TimeUnix": [_int(e.get("timeUnixNano")) for e in ex],
        "Exemplars.Value": [_number(e) for e in ex],
        "Exemplars.SpanId": [_hex(e.get("spanId")) for e in ex],
        "Exemplars.TraceId": [_hex(e.get("traceId")) for e in ex],
    }


def _number(point: Mapping[str, Any]) -> float:
    if point.get("asDouble") is not None:
        return float(point["asDouble"])
    if point.get("asInt") is not None:
        return float(int(point["asInt"]))
    return 0.0


def metric_rows(line: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """``(table kind, row)`` for each data point of one ExportMetricsServiceRequest.

    Exponential histograms and summaries are not written (the frames do not read them either).
    """
    for rm in line.get("resourceMetrics") or ():
        res = rm.get("resource") or {}
        resource = attribute_map(res.get("attributes"))
        service = dict(resource).get("service.name", "")
        for sm in rm.get("scopeMetrics") or ():
            scope = sm.get("scope") or {}
            common = {
                "ResourceAttributes": resource,
                "ResourceSchemaUrl": str(rm.get("schemaUrl") or ""),
                "ScopeName": str(scope.get("name") or ""),
                "ScopeVersion": str(scope.get("version") or ""),
                "ScopeAttributes": attribute_map(scope.get("attributes")),
                "ScopeDroppedAttrCount": int(scope.get("droppedAttributesCount") or 0),
                "ScopeSchemaUrl": str(sm.get("schemaUrl") or ""),
                "ServiceName": service,
            }
            for metric in sm.get("metrics") or ():
                named = {
                    **common,
                    "MetricName": str(metric.get("name") or ""),
                    "MetricDescription": str(metric.get("description") or ""),
                    "MetricUnit": str(metric.get("unit") or ""),
                }
                for kind in ("gauge", "sum", "histogram"):
                    data = metric.get(kind)
                    if not data:
                        continue
                    for point in data.get("dataPoints") or ():
                        row = {
                            **named,
                            "Attributes": attribute_map(point.get("attributes")),
                            "StartTimeUnix": _int(point.get("startTimeUnixNano")),
                            "TimeUnix": _int(point.get("timeUnixNano")),
                            "Flags": int(point.get("flags") or 0),
                            **_exemplars(point),
                        }
                        if kind == "histogram":
                            row.update(
                                Count=_int(point.get("count")),
                                Sum=float(point.get("sum") or 0.0),
                                BucketCounts=[_int(c) for c in point.get("bucketCounts") or ()],
                                ExplicitBounds=[
                                    float(b) for b in point.get("explicitBounds") or ()
                                ],
                                Min=float(point.get("min") or 0.0),
                                Max=float(point.get("max") or 0.0),
                            )
                        else:
                            row["Value"] = _number(point)
                        if kind != "gauge":
                            row["AggregationTemporality"] = _int(data.get("aggregationTemporality"))
                        if kind == "sum":
                            row["IsMonotonic"] = bool(data.get("isMonotonic"))
                        yield kind, row


def step_rows(
    step: Mapping[str, Any], resource: list[tuple[str, str]], scope_version: str
) -> Iterable[tuple[str, dict[str, Any]]]:
    """``(table kind, row)`` for each field of one step record (see the module docstring)."""
    time_ns = int(step[sc.STEP_TIME_UNIX_NANO])
    engine = step.get(sc.STEP_ENGINE_ID)
    engine_idx = step.get(sc.STEP_ENGINE_IDX)
    attributes = [
        *([(sc.SAGELLM_ENGINE_ID, str(engine))] if engine is not None else []),
        *([(sc.SAGELLM_ENGINE_IDX, str(int(engine_idx)))] if engine_idx is not None else []),
        (STEP_ATTRIBUTE, str(int(step[sc.STEP_INDEX]))),
        (STEP_TIME_ATTRIBUTE, str(time_ns)),
    ]
    base = {
        "ResourceAttributes": resource,
        "ResourceSchemaUrl": "",
        "ScopeName": sc.SCOPE_NAME,
        "ScopeVersion": scope_version,
        "ScopeAttributes": [],
        "ScopeDroppedAttrCount": 0,
        "ScopeSchemaUrl": "",
        "ServiceName": dict(resource).get("service.name", ""),
        "MetricDescription": "",
        "Attributes": attributes,
        "StartTimeUnix": time_ns,
        "TimeUnix": time_ns,
        "Flags": 0,
        "Exemplars.FilteredAttributes": [],
        "Exemplars.TimeUnix": [],
        "Exemplars.Value": [],
        "Exemplars.SpanId": [],
        "Exemplars.TraceId": [],
    }
    for key, (name, kind, unit) in STEP_METRICS.items():
        value = step.get(key)
        if value is None:
            continue
        row = {**base, "MetricName": name, "MetricUnit": unit, "Value": float(value)}
        if kind == "sum":
            row.update(AggregationTemporality=DELTA, IsMonotonic=True)
        yield kind, row
