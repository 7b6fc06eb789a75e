"""The exporter's tables → the frames a run folder gives (spans, requests, metrics, steps).

The work that belongs to ClickHouse runs there: filters, attribute lookups (one ``Map`` read
per typed column), the ``Events`` zip and the step points' selection; rows travel as Arrow into
Polars, which types the attribute strings back with the loader's mapping
(:data:`~sagellm_obs.frames.spans.ATTRIBUTE_COLUMNS`).

What differs from a run-folder load, by construction: ``source_file`` names the table and
``source_line`` is null; ``attributes`` values are the exporter's text (a double such as
``0.7`` is the same, ``1.0`` reads ``1``); ``metrics.attributes`` values are all JSON strings
(the exporter keeps no types); metric times keep whole seconds in tables of the current
exporter layout (``DateTime``), nanoseconds in older ones (``DateTime64(9)``); a histogram's
absent ``min``/``max`` read 0 (the exporter writes 0). Event attributes and links are not read
(the frames do not hold them). ``kv_events`` is always empty: the tables hold no KV cache
events.

Tables of the exporter's JSON layout (attributes in JSON columns) are read through
:func:`~sagellm_obs.clickhouse.ddl.source`, which shows them as the Map layout: the same SQL
reads both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from sagellm_obs import semconv as sc
from sagellm_obs.clickhouse import ddl
from sagellm_obs.clickhouse.connect import ClickHouseError, Connection, connect
from sagellm_obs.clickhouse.rows import STEP_ATTRIBUTE, STEP_METRICS, STEP_TIME_ATTRIBUTE
from sagellm_obs.clickhouse.source import ClickHouseSource, as_source, quote_string
from sagellm_obs.frames.schemas import KV_EVENTS, METRICS, RUNS, SPANS, STEPS, TIME, conform
from sagellm_obs.frames.spans import ATTRIBUTE_COLUMNS, CONSUMED, requests_of
from sagellm_obs.store.reader import Errors, ReadReport

if TYPE_CHECKING:
    from sagellm_obs.frames.load import Scan

_LOOKUP_KEYS = sorted(
    {key for _, keys in ATTRIBUTE_COLUMNS.values() for key in keys}
    | {sc.SAGELLM_ENGINE_ID, sc.SAGELLM_RUN_ID}
)
_KINDS = {"UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"}
_STATUSES = {"UNSET", "OK", "ERROR"}
_TRACE_ID = r"^[0-9a-fA-F]{32}$"
_SPAN_ID = r"^[0-9a-fA-F]{16}$"
_KV = "'Array(Tuple(key String, value String))'"


class MalformedRowError(ClickHouseError):
    """A row whose value cannot be read: names the table, the column and the row."""


def _get(column: str, key: str) -> str:
    """SQL for a map value, NULL when the key is absent (``m[k]`` alone gives '')."""
    k = quote_string(key)
    return f"if(mapContains({column}, {k}), {column}[{k}], NULL)"


def _and(terms: list[str]) -> str:
    return " AND ".join(terms) if terms else "1"


def tables_of(conn: Connection, tables: ddl.Tables) -> dict[str, dict[str, str]]:
    """The exporter tables present in ``tables.database``, checked, with their columns.

    Raises:
        LayoutError: A table of another layout.
        ClickHouseError: None of the four tables exists.
    """
    found = {}
    for kind in ddl.KINDS:
        cols = ddl.describe(conn, tables, kind)
        if cols is None:
            continue
        ddl.check_layout(cols, tables, kind, json_ok=True)
        found[kind] = cols
    if not found:
        raise ClickHouseError(
            f"{conn.name}: no OpenTelemetry Collector exporter tables in database "
            f"{tables.database!r} (looked for {', '.join(tables.name(k) for k in ddl.KINDS)})"
        )
    return found


# --- spans --------------------------------------------------------------------------------------


def read_spans(
    conn: Connection,
    tables: ddl.Tables,
    columns: dict[str, str],
    source: ClickHouseSource,
    errors: Errors,
    report: ReadReport,
) -> pl.DataFrame:
    """The ``spans`` frame of the traces table (see the module docstring)."""
    table = ddl.source(tables, ddl.TRACES, columns)
    terms, params = source.where_spans(table)
    lookups = ", ".join(f"{_get('SpanAttributes', k)} AS {_alias(k)}" for k in _LOOKUP_KEYS)
    consumed = "[" + ", ".join(quote_string(k) for k in sorted(CONSUMED)) + "]"
    sql = f"""
        SELECT Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName,
            {_get("ResourceAttributes", sc.RESOURCE_ENGINE_ID)} AS res_engine,
            {_get("ResourceAttributes", sc.RESOURCE_RUN_ID)} AS res_run,
            ScopeName, Duration, StatusCode, StatusMessage, {lookups},
            CAST(mapFilter((k, v) -> k NOT IN {consumed}, SpanAttributes), {_KV}) AS rest,
            CAST(arrayMap((n, t) -> tuple(n, t), `Events.Name`, `Events.Timestamp`),
                 'Array(Tuple(name String, time DateTime64(9, \\'UTC\\')))') AS events
        FROM {table} WHERE {_and(terms)}
        ORDER BY Timestamp, TraceId, SpanId"""
    raw = pl.from_arrow(conn.query_arrow(sql, params))
    assert isinstance(raw, pl.DataFrame)
    label = tables.label(ddl.TRACES)
    if raw.is_empty():
        return pl.DataFrame(schema=SPANS)
    raw = _check_spans(raw, label, errors, report)
    typed = [_typed(col, dtype, keys) for col, (dtype, keys) in ATTRIBUTE_COLUMNS.items()]
    raw = _check_typed(raw, label, errors, report)
    start = pl.col("Timestamp").dt.convert_time_zone("UTC")
    # Lazy, as the run-folder loader: polars' eager division rounds differently (1e-6 vs
    # 1.0000000000000002e-06) and the two loads must agree to the bit.
    out = raw.lazy().select(
        pl.col("TraceId").str.to_lowercase().alias("trace_id"),
        pl.col("SpanId").str.to_lowercase().alias("span_id"),
        pl.when(pl.col("ParentSpanId") != "")
        .then(pl.col("ParentSpanId").str.to_lowercase())
        .alias("parent_span_id"),
        pl.col("SpanName").alias("name"),
        _word("SpanKind", "SPAN_KIND_", "UNSPECIFIED").alias("kind"),
        start.alias("start"),
        (start + pl.duration(nanoseconds=pl.col("Duration").cast(pl.Int64))).alias("end"),
        (pl.col("Duration").cast(pl.Int64) / 1e9).alias("duration_s"),
        _word("StatusCode", "STATUS_CODE_", "UNSET").alias("status_code"),
        _null_if_empty("StatusMessage").alias("status_message"),
        _null_if_empty("ServiceName").alias("service_name"),
        pl.coalesce(_col(sc.SAGELLM_ENGINE_ID), "res_engine").alias("engine_id"),
        pl.coalesce("res_run", _col(sc.SAGELLM_RUN_ID)).alias("run_id"),
        _null_if_empty("ScopeName").alias("scope"),
        *typed,
        pl.col("events"),
        pl.col("rest").alias("attributes"),
        pl.lit(label).alias("source_file"),
        pl.lit(None, dtype=pl.Int64).alias("source_line"),
    )
    return conform(out.collect(), SPANS)


def _alias(key: str) -> str:
    return "`v:" + key + "`"


def _col(key: str) -> pl.Expr:
    return pl.col("v:" + key)


def _null_if_empty(name: str) -> pl.Expr:
    return pl.when(pl.col(name) != "").then(pl.col(name))


def _word(name: str, prefix: str, empty: str) -> pl.Expr:
    word = pl.col(name).str.to_uppercase().str.strip_prefix(prefix)
    return pl.when(word == "").then(pl.lit(empty)).otherwise(word)


def _parse(value: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """An exporter attribute string as ``dtype`` (null when it does not parse)."""
    if dtype == pl.Int64:
        return pl.coalesce(
            value.cast(pl.Int64, strict=False),
            value.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False),
        )
    if dtype == pl.Float64:
        return value.cast(pl.Float64, strict=False)
    if dtype == pl.Boolean:
        return value.str.to_lowercase().replace_strict(
            {"true": True, "false": False}, default=None, return_dtype=pl.Boolean
        )
    # Arrays are JSON text: a string column reads the first element (finish reasons).
    first = value.str.json_path_match("$[0]")
    return pl.when(value.str.starts_with("[")).then(first).otherwise(value)


def _typed(col: str, dtype: pl.DataType, keys: tuple[str, ...]) -> pl.Expr:
    return pl.coalesce([_parse(_col(k), dtype) for k in keys]).alias(col)


def _problems(frame: pl.DataFrame, checks: list[tuple[pl.Expr, pl.Expr]]) -> pl.DataFrame:
    """``frame`` with a ``_problem`` column: the first failing check's message, else null."""
    expr: Any = pl.when(checks[0][0]).then(checks[0][1])
    for cond, msg in checks[1:]:
        expr = expr.when(cond).then(msg)
    return frame.with_columns(expr.otherwise(pl.lit(None, dtype=pl.String)).alias("_problem"))


def _reject(
    frame: pl.DataFrame, label: str, what: pl.Expr, errors: Errors, report: ReadReport
) -> pl.DataFrame:
    bad = frame.filter(pl.col("_problem").is_not_null())
    if bad.height:
        rows = bad.select(what.alias("what"), "_problem").rows()
        if errors == "raise":
            row, problem = rows[0]
            more = f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""
            raise MalformedRowError(f"{label}: {problem}, in {row}{more}")
        for row, problem in rows:
            report.skipped.append((label, 0, f"{problem}, in {row}"))
    return frame.filter(pl.col("_problem").is_null()).drop("_problem")


_SPAN_ROW = pl.format("span {}/{}", pl.col("TraceId"), pl.col("SpanId"))


def _check_spans(raw: pl.DataFrame, label: str, errors: Errors, report: ReadReport) -> pl.DataFrame:
    trace, span, parent = pl.col("TraceId"), pl.col("SpanId"), pl.col("ParentSpanId")
    kind = pl.col("SpanKind").str.to_uppercase().str.strip_prefix("SPAN_KIND_")
    status = pl.col("StatusCode").str.to_uppercase().str.strip_prefix("STATUS_CODE_")
    checks = [
        (
            ~trace.str.contains(_TRACE_ID),
            pl.format("column TraceId is not 32 hex digits: {}", trace.str.slice(0, 40)),
        ),
        (
            ~span.str.contains(_SPAN_ID),
            pl.format("column SpanId is not 16 hex digits: {}", span.str.slice(0, 40)),
        ),
        (
            (parent != "") & ~parent.str.contains(_SPAN_ID),
            pl.format("column ParentSpanId is not 16 hex digits: {}", parent.str.slice(0, 40)),
        ),
        (
            (kind != "") & ~kind.is_in(sorted(_KINDS)),
            pl.format("column SpanKind is not a span kind: {}", pl.col("SpanKind")),
        ),
        (
            (status != "") & ~status.is_in(sorted(_STATUSES)),
            pl.format("column StatusCode is not a status code: {}", pl.col("StatusCode")),
        ),
    ]
    return _reject(_problems(raw, checks), label, _SPAN_ROW, errors, report)


def _check_typed(raw: pl.DataFrame, label: str, errors: Errors, report: ReadReport) -> pl.DataFrame:
    """Reject spans whose typed attributes hold text that is not of the column's type."""
    checks = []
    for _, (dtype, keys) in ATTRIBUTE_COLUMNS.items():
        if dtype == pl.String:
            continue
        what = {pl.Int64: "an integer", pl.Float64: "a number", pl.Boolean: "true or false"}
        for key in keys:
            value = _col(key)
            checks.append(
                (
                    value.is_not_null() & _parse(value, dtype).is_null(),
                    pl.format(
                        "column SpanAttributes['{}'] is not {}: {}",
                        pl.lit(key),
                        pl.lit(what[dtype]),  # type: ignore[index]
                        value.str.slice(0, 40),
                    ),
                )
            )
    return _reject(_problems(raw, checks), label, _SPAN_ROW, errors, report)


# --- metrics and steps ------------------------------------------------------------------------


def read_metrics(
    conn: Connection,
    tables: ddl.Tables,
    present: dict[str, dict[str, str]],
    source: ClickHouseSource,
    errors: Errors,
    report: ReadReport,
) -> pl.DataFrame:
    """The ``metrics`` frame of the gauge, sum and histogram tables (step points excluded)."""
    parts = []
    terms, params = source.where_metrics()
    where = _and([*terms, f"NOT mapContains(Attributes, {quote_string(STEP_ATTRIBUTE)})"])
    for kind in (ddl.GAUGE, ddl.SUM, ddl.HISTOGRAM):
        if kind not in present:
            continue
        if kind == ddl.GAUGE:
            extra = "'gauge' AS kind, CAST(NULL, 'Nullable(String)') AS temporality, Value AS value"
        elif kind == ddl.SUM:
            extra = (
                "if(IsMonotonic, 'counter', 'updowncounter') AS kind, "
                f"{_temporality()}, Value AS value"
            )
        else:
            extra = (
                f"'histogram' AS kind, {_temporality()}, Count AS count, Sum AS sum, "
                "BucketCounts AS bucket_counts, ExplicitBounds AS explicit_bounds, "
                "Min AS min, Max AS max"
            )
        start = "toDateTime64(StartTimeUnix, 9, 'UTC')"
        sql = f"""
            SELECT toDateTime64(TimeUnix, 9, 'UTC') AS time,
                if(toUnixTimestamp64Nano({start}) = 0 OR {"1" if kind == ddl.GAUGE else "0"},
                   NULL, {start}) AS start_time,
                MetricName AS name, MetricUnit AS unit, {extra},
                CAST(Attributes, {_KV}) AS attrs, ServiceName AS service_name,
                {_get("ResourceAttributes", sc.RESOURCE_ENGINE_ID)} AS engine_id,
                {_get("ResourceAttributes", sc.RESOURCE_RUN_ID)} AS run_id
            FROM {ddl.source(tables, kind, present[kind])} WHERE {where}"""
        df = pl.from_arrow(conn.query_arrow(sql, params))
        assert isinstance(df, pl.DataFrame)
        if df.is_empty():
            continue
        df = df.with_columns(
            pl.col("time").dt.convert_time_zone("UTC"),
            pl.col("start_time").dt.convert_time_zone("UTC"),
            _json_object(pl.col("attrs")).alias("attributes"),
            _null_if_empty("service_name").alias("service_name"),
            pl.col("attrs")
            .list.eval(
                pl.element()
                .filter(pl.element().struct.field("key") == sc.SAGELLM_ENGINE_IDX)
                .struct.field("value")
            )
            .list.first()
            .cast(pl.Int64, strict=False)
            .alias("engine_idx"),
            pl.lit(tables.label(kind)).alias("source_file"),
        )
        if kind == ddl.HISTOGRAM:
            df = df.with_columns(pl.col("bucket_counts").cast(pl.List(pl.Int64)))
        parts.append(conform(df, METRICS))
    if not parts:
        return pl.DataFrame(schema=METRICS)
    return pl.concat(parts).sort("time", "name", maintain_order=True)


def _temporality() -> str:
    return (
        "multiIf(AggregationTemporality = 1, 'delta', AggregationTemporality = 2, 'cumulative', "
        "NULL) AS temporality"
    )


def _json_string(x: pl.Expr) -> pl.Expr:
    return pl.struct(x.alias("v")).struct.json_encode().str.slice(5).str.head(-1)


def _json_object(col: pl.Expr) -> pl.Expr:
    """A key/value list as a JSON object string with sorted keys and string values."""
    key = pl.element().struct.field("key")
    value = pl.element().struct.field("value")
    pairs = col.list.eval(pl.format("{}:{}", _json_string(key), _json_string(value)).sort_by(key))
    return pl.concat_str([pl.lit("{"), pairs.list.join(","), pl.lit("}")]).fill_null("{}")


_STEP_NAMES = {name: key for key, (name, _, _) in STEP_METRICS.items()}


def read_steps(
    conn: Connection,
    tables: ddl.Tables,
    present: dict[str, dict[str, str]],
    source: ClickHouseSource,
    errors: Errors,
    report: ReadReport,
) -> pl.DataFrame:
    """The ``steps`` frame from the step points the writer puts in the gauge and sum tables."""
    terms, params = source.where_metrics()
    names = "[" + ", ".join(quote_string(n) for n in _STEP_NAMES) + "]"
    where = _and(
        [
            *terms,
            f"mapContains(Attributes, {quote_string(STEP_ATTRIBUTE)})",
            f"MetricName IN {names}",
        ]
    )
    selects = [
        f"""SELECT '{tables.label(kind)}' AS tbl, MetricName AS name, Value AS value,
                Attributes[{quote_string(STEP_ATTRIBUTE)}] AS step_text,
                {_get("Attributes", STEP_TIME_ATTRIBUTE)} AS time_text,
                toUnixTimestamp64Nano(toDateTime64(TimeUnix, 9)) AS time_fallback,
                {_get("Attributes", sc.SAGELLM_ENGINE_ID)} AS engine_id,
                {_get("Attributes", sc.SAGELLM_ENGINE_IDX)} AS engine_idx_text,
                {_get("ResourceAttributes", sc.RESOURCE_RUN_ID)} AS run_id
            FROM {ddl.source(tables, kind, present[kind])} WHERE {where}"""
        for kind in (ddl.GAUGE, ddl.SUM)
        if kind in present
    ]
    if not selects:
        return pl.DataFrame(schema=STEPS)
    raw = pl.from_arrow(conn.query_arrow(" UNION ALL ".join(selects), params))
    assert isinstance(raw, pl.DataFrame)
    if raw.is_empty():
        return pl.DataFrame(schema=STEPS)
    step = pl.col("step_text").cast(pl.Int64, strict=False)
    time = pl.col("time_text").cast(pl.Int64, strict=False)
    checks = [
        (
            step.is_null(),
            pl.format(
                "column Attributes['{}'] is not an integer: {}",
                pl.lit(STEP_ATTRIBUTE),
                pl.col("step_text"),
            ),
        ),
        (
            pl.col("time_text").is_not_null() & time.is_null(),
            pl.format(
                "column Attributes['{}'] is not an integer: {}",
                pl.lit(STEP_TIME_ATTRIBUTE),
                pl.col("time_text"),
            ),
        ),
    ]
    checked = _problems(raw, checks)
    for label in checked.get_column("tbl").unique().to_list():
        part = checked.filter(pl.col("tbl") == label)
        if part.filter(pl.col("_problem").is_not_null()).height:
            _reject(part, label, pl.format("metric {} point", pl.col("name")), errors, report)
    rows = (
        checked.filter(pl.col("_problem").is_null())
        .with_columns(
            step.alias("step"),
            pl.col("engine_idx_text").cast(pl.Int64, strict=False).fill_null(0).alias("engine_idx"),
            pl.coalesce(time, pl.col("time_fallback").cast(pl.Int64)).alias("t"),
            pl.col("name").replace_strict(_STEP_NAMES, default=None).alias("field"),
        )
        .pivot(
            "field",
            index=["t", "engine_id", "engine_idx", "run_id", "step"],
            values="value",
            aggregate_function="first",
        )
    )
    queries, hits = pl.col(sc.STEP_PREFIX_QUERIES), pl.col(sc.STEP_PREFIX_HITS)
    for key in _STEP_NAMES.values():
        if key not in rows.columns:
            rows = rows.with_columns(pl.lit(None, dtype=pl.Float64).alias(key))
    ints = [k for k in _STEP_NAMES.values() if k != sc.STEP_KV_USAGE]
    out = rows.with_columns(
        pl.col("t").cast(TIME).alias("time"),
        *(pl.col(k).round(0).cast(pl.Int64) for k in ints),
    ).with_columns(pl.when(queries > 0).then(hits / queries).alias("prefix_hit_rate"))
    return conform(out.sort("time", "engine_id", "step"), STEPS)


# --- the frames ---------------------------------------------------------------------------------


def scan_clickhouse(source: Any, *, errors: Errors = "raise") -> Scan:
    """``frames.scan`` of a ClickHouse source: the rows are read now and held as LazyFrames.

    Raises:
        LayoutError: A table of another layout.
        MalformedRowError: A row that cannot be read, with ``errors="raise"``.
        ClickHouseError: No exporter table, or the engine refused a query.
    """
    from sagellm_obs.frames.load import Scan  # frames.load dispatches here: import at call time

    src = as_source(source)
    conn, dsn_db = connect(src.target, create=False)
    tables = src.resolve(dsn_db)
    present = tables_of(conn, tables)
    report = ReadReport()
    spans = (
        read_spans(conn, tables, present[ddl.TRACES], src, errors, report)
        if ddl.TRACES in present
        else pl.DataFrame(schema=SPANS)
    )
    metrics = read_metrics(conn, tables, present, src, errors, report)
    steps = read_steps(conn, tables, present, src, errors, report)
    report.warn()
    runs = _runs(spans, metrics, steps, conn.name)
    return Scan(
        spans=spans.lazy(),
        requests=requests_of(spans.lazy()),
        steps=steps.lazy(),
        metrics=metrics.lazy(),
        report=report,
        runs=runs,
        # The exporter's tables have no place for KV cache events (``export clickhouse`` leaves
        # kv-events files out): the frame is empty, never guessed from spans or steps.
        kv_events=pl.LazyFrame(schema=KV_EVENTS),
    )


def _runs(
    spans: pl.DataFrame, metrics: pl.DataFrame, steps: pl.DataFrame, name: str
) -> pl.DataFrame:
    """One ``runs`` row per run id found (kind ``clickhouse``)."""
    ids = pl.concat([f.select("run_id") for f in (spans, metrics, steps)]).unique(
        maintain_order=True
    )
    ids = ids.sort("run_id", nulls_last=True)
    if ids.is_empty():
        return pl.DataFrame(schema=RUNS)
    rows = ids.with_columns(pl.lit(name).alias("path"), pl.lit("clickhouse").alias("kind"))
    return conform(rows, RUNS)
