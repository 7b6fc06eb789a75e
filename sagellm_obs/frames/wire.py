"""The on-disk shapes the loader reads, as polars dtypes, and their tolerant normalisation.

Three line shapes:

* :data:`OTLP_LINE`: one OTLP/JSON ``ExportTraceServiceRequest`` or
  ``ExportMetricsServiceRequest`` per line, as the store and the OpenTelemetry Collector's file
  exporter write them (a file may mix both; ``resourceLogs`` lines are ignored). Only the fields
  the frames use are declared; others are ignored.
* :data:`STEP_LINE`: one engine-step record per line (keys in ``semconv.STEP_*``).
* :data:`CLIENT_LINE`: one client-side timing per line (``requests-client-*.jsonl``)::

      {"request_id": "r1", "client_start_unix_nano": 1700000000000000000,
       "client_ttft_s": 0.031, "client_e2e_s": 0.52,
       "workload": "phases", "family": "family-01", "workload_phase": "warm"}

  ``client_ttft_s`` is null when no token arrived; ``workload``, ``family`` (the shared-prefix
  family or chat session) and ``workload_phase`` (the act of a phased workload, e.g. ``phases``)
  may be absent or null; other keys (``error``, ``client_itl_ms``...) are ignored.

The fast path decodes lines straight into these dtypes and is strict about JSON types. Producers
vary within what OTLP/JSON allows (an int64 as a JSON number instead of a string, an enum by name,
``"NaN"`` for a double), so a file the fast path rejects is read again line by line with
:func:`normalize`, which coerces those variants and names the first real shape error by its
JSON path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import polars as pl

from sagellm_obs import semconv as sc

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

_SCALAR = {
    "stringValue": pl.String,
    "intValue": pl.String,  # int64 as a decimal string (OTLP/JSON)
    "doubleValue": pl.Float64,
    "boolValue": pl.Boolean,
}
ANY_VALUE = pl.Struct({**_SCALAR, "arrayValue": pl.Struct({"values": pl.List(pl.Struct(_SCALAR))})})
KEY_VALUES = pl.List(pl.Struct({"key": pl.String, "value": ANY_VALUE}))
_RESOURCE = pl.Struct({"attributes": KEY_VALUES})
_SCOPE = pl.Struct({"name": pl.String, "version": pl.String})

SPAN = pl.Struct(
    {
        "traceId": pl.String,
        "spanId": pl.String,
        "parentSpanId": pl.String,
        "name": pl.String,
        "kind": pl.Int64,
        "startTimeUnixNano": pl.String,
        "endTimeUnixNano": pl.String,
        "attributes": KEY_VALUES,
        "events": pl.List(pl.Struct({"timeUnixNano": pl.String, "name": pl.String})),
        "status": pl.Struct({"code": pl.Int64, "message": pl.String}),
    }
)
_NUMBER_POINT = pl.Struct(
    {
        "attributes": KEY_VALUES,
        "startTimeUnixNano": pl.String,
        "timeUnixNano": pl.String,
        "asDouble": pl.Float64,
        "asInt": pl.String,
    }
)
_HISTOGRAM_POINT = pl.Struct(
    {
        "attributes": KEY_VALUES,
        "startTimeUnixNano": pl.String,
        "timeUnixNano": pl.String,
        "count": pl.String,
        "sum": pl.Float64,
        "bucketCounts": pl.List(pl.String),
        "explicitBounds": pl.List(pl.Float64),
        "min": pl.Float64,
        "max": pl.Float64,
    }
)
METRIC = pl.Struct(
    {
        "name": pl.String,
        "unit": pl.String,
        "gauge": pl.Struct({"dataPoints": pl.List(_NUMBER_POINT)}),
        "sum": pl.Struct(
            {
                "dataPoints": pl.List(_NUMBER_POINT),
                "aggregationTemporality": pl.Int64,
                "isMonotonic": pl.Boolean,
            }
        ),
        "histogram": pl.Struct(
            {"dataPoints": pl.List(_HISTOGRAM_POINT), "aggregationTemporality": pl.Int64}
        ),
    }
)
OTLP_LINE = pl.Schema(
    {
        "resourceSpans": pl.List(
            pl.Struct(
                {
                    "resource": _RESOURCE,
                    "scopeSpans": pl.List(pl.Struct({"scope": _SCOPE, "spans": pl.List(SPAN)})),
                }
            )
        ),
        "resourceMetrics": pl.List(
            pl.Struct(
                {
                    "resource": _RESOURCE,
                    "scopeMetrics": pl.List(
                        pl.Struct({"scope": _SCOPE, "metrics": pl.List(METRIC)})
                    ),
                }
            )
        ),
    }
)
OTLP_KEYS = ("resourceSpans", "resourceMetrics", "resourceLogs", "resourceProfiles")
"""Top-level keys of OTLP export requests; a line with none of them is not OTLP."""

STEP_LINE = pl.Schema(
    {
        sc.STEP_TIME_UNIX_NANO: pl.Int64,
        sc.STEP_ENGINE_ID: pl.String,
        sc.STEP_ENGINE_IDX: pl.Int64,
        sc.STEP_INDEX: pl.Int64,
        sc.STEP_RUNNING: pl.Int64,
        sc.STEP_WAITING: pl.Int64,
        sc.STEP_KV_USAGE: pl.Float64,
        sc.STEP_PREFIX_QUERIES: pl.Int64,
        sc.STEP_PREFIX_HITS: pl.Int64,
        sc.STEP_PROMPT_TOKENS: pl.Int64,
        sc.STEP_CACHED_PROMPT_TOKENS: pl.Int64,
        sc.STEP_GENERATION_TOKENS: pl.Int64,
        sc.STEP_PREEMPTIONS: pl.Int64,
        sc.STEP_FINISHED: pl.Int64,
    }
)

KV_EVENT_LINE = pl.Schema(
    {
        "event": pl.String(),
        "request_id": pl.String(),
        "trace_id": pl.String(),
        "kv_handle": pl.Struct(
            {
                "handle_id": pl.String(),
                "request_id": pl.String(),
                "num_tokens": pl.Int64(),
                "device": pl.String(),
            }
        ),
        "evict_reason": pl.String(),
        "device": pl.String(),
        "metadata": pl.Struct(
            {
                sc.KV_TIME_UNIX_NANO: pl.Int64(),
                sc.KV_ENGINE_ID: pl.String(),
                sc.KV_ENGINE_IDX: pl.Int64(),
                sc.KV_KIND: pl.String(),
                sc.KV_BLOCK_HASH: pl.String(),
                sc.KV_PARENT_BLOCK_HASH: pl.String(),
                sc.KV_PREFIX_HASH: pl.String(),
                sc.KV_BLOCK_SIZE: pl.Int64(),
                sc.KV_MEDIUM: pl.String(),
                sc.KV_GROUP_IDX: pl.Int64(),
                sc.KV_BATCH_SEQ: pl.Int64(),
            }
        ),
    }
)
"""A kv-events line: a sageLLM ``KVHookPayload`` (fields we do not fill are not decoded)."""

CLIENT_LINE = pl.Schema(
    {
        "request_id": pl.String,
        "client_start_unix_nano": pl.Int64,
        "client_ttft_s": pl.Float64,
        "client_e2e_s": pl.Float64,
        "workload": pl.String,
        "family": pl.String,
        "workload_phase": pl.String,
    }
)

# Enum names that protobuf's JSON mapping writes where OTLP/JSON asks for integers.
ENUM_NAMES: Mapping[str, int] = {
    "AGGREGATION_TEMPORALITY_UNSPECIFIED": 0,
    "AGGREGATION_TEMPORALITY_DELTA": 1,
    "AGGREGATION_TEMPORALITY_CUMULATIVE": 2,
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
    "STATUS_CODE_UNSET": 0,
    "STATUS_CODE_OK": 1,
    "STATUS_CODE_ERROR": 2,
}
_ENUM_PREFIXES = (b'"AGGREGATION_TEMPORALITY_', b'"SPAN_KIND_', b'"STATUS_CODE_')
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def replace_enum_names(data: bytes) -> bytes:
    """Rewrite quoted enum names as their numbers, a cheap byte-level pass over a whole file.

    Our own metric lines (protobuf's ``MessageToDict``) name ``aggregationTemporality``; OTLP/JSON
    uses numbers. A string attribute that happens to equal an enum name becomes a number here and
    makes the fast path fail, so the file is then read by the tolerant path, which is exact.
    """
    if not any(prefix in data for prefix in _ENUM_PREFIXES):
        return data
    for name, number in ENUM_NAMES.items():
        data = data.replace(b'"' + name.encode() + b'"', str(number).encode())
    return data


class ShapeError(ValueError):
    """A JSON object that does not have the expected shape; the message names the JSON path."""


def check_otlp_object(obj: Mapping[str, Any]) -> None:
    """Raise :class:`ShapeError` unless ``obj`` is an OTLP export request (or empty)."""
    if obj and not any(key in obj for key in OTLP_KEYS):
        keys = ", ".join(sorted(obj)[:5])
        raise ShapeError(
            "not an OTLP/JSON export request (expected resourceSpans or resourceMetrics, "
            f"got keys: {keys})"
        )


def required_keys(kind: str) -> tuple[str, ...]:
    """Keys a line of ``kind`` ("steps", "requests-client" or "kv-events") must carry."""
    if kind == "kv-events":
        return ("event", "metadata")
    return (sc.STEP_TIME_UNIX_NANO,) if kind == "steps" else ("request_id",)


def normalize(obj: Mapping[str, Any], schema: pl.Schema) -> dict[str, Any]:
    """Coerce one decoded JSON line into ``schema``'s JSON types, dropping undeclared keys.

    Accepted variants: integers as JSON numbers or decimal strings, enum names, integral floats
    for integer fields, ``"NaN"``/``"Infinity"`` doubles (kept as null), null anywhere.

    Raises:
        ShapeError: A value of the wrong JSON type, naming its path (``resourceSpans[0]...``).
    """
    return {
        name: _coerce(obj.get(name), dtype, name) for name, dtype in schema.items() if name in obj
    }


def _coerce(value: Any, dtype: PolarsDataType, path: str) -> Any:
    if value is None:
        return None
    if isinstance(dtype, pl.Struct):
        if not isinstance(value, dict):
            raise ShapeError(f"{path}: expected an object, got {_json_type(value)}")
        return {
            f.name: _coerce(value.get(f.name), f.dtype, f"{path}.{f.name}")
            for f in dtype.fields
            if f.name in value
        }
    if isinstance(dtype, pl.List):
        if not isinstance(value, list):
            raise ShapeError(f"{path}: expected an array, got {_json_type(value)}")
        inner = dtype.inner
        return [_coerce(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
    if dtype == pl.String:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # an int64 written as a JSON number
        raise ShapeError(f"{path}: expected a string, got {_json_type(value)}")
    if dtype == pl.Int64:
        return _coerce_int(value, path)
    if dtype == pl.Float64:
        return _coerce_float(value, path)
    if dtype == pl.Boolean:
        if isinstance(value, bool):
            return value
        raise ShapeError(f"{path}: expected true or false, got {_json_type(value)}")
    raise AssertionError(f"no coercion for {dtype}")  # pragma: no cover - wire dtypes only


def _coerce_int(value: Any, path: str) -> int:
    out: int | None = None
    if isinstance(value, bool):
        out = None
    elif isinstance(value, int):
        out = value
    elif isinstance(value, float) and value.is_integer():
        out = int(value)
    elif isinstance(value, str):
        if value in ENUM_NAMES:
            out = ENUM_NAMES[value]
        else:
            try:
                out = int(value)
            except ValueError:
                out = None
    if out is None:
        raise ShapeError(f"{path}: expected an integer, got {_json_type(value)} {value!r:.40}")
    if not _INT64_MIN <= out <= _INT64_MAX:
        raise ShapeError(f"{path}: integer {out} out of the int64 range")
    return out


def _coerce_float(value: Any, path: str) -> float | None:
    if isinstance(value, bool):
        raise ShapeError(f"{path}: expected a number, got a boolean")
    if isinstance(value, (int, float)):
        try:
            out = float(value)
        except OverflowError:  # an integer beyond the double range: not finite as a double
            return None
    elif isinstance(value, str):
        try:
            out = float(value)
        except ValueError:
            raise ShapeError(f"{path}: expected a number, got string {value!r:.40}") from None
    else:
        raise ShapeError(f"{path}: expected a number, got {_json_type(value)}")
    return out if math.isfinite(out) else None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
