"""``export_clickhouse``: a run folder into the exporter's tables, once.

Rows are shaped by :mod:`~sagellm_obs.clickhouse.rows` exactly as the OpenTelemetry Collector
ClickHouse exporter shapes them, so a notebook, Grafana or any tool built on that schema reads a
local run and a collector-fed fleet with the same SQL. Missing tables are created with the
exporter's DDL (:mod:`~sagellm_obs.clickhouse.ddl`); existing ones must have its layout.

Idempotent without changing the exporter's DDL (no ReplacingMergeTree): before inserting, the
keys already present for the run are read back (spans: ``(TraceId, SpanId)``; metric points:
name, time at the table's precision, attributes and value) and only the missing rows are
inserted, as many copies of a key as the table lacks, so a second export inserts nothing and an
interrupted one is completed. Spans and step points go one run-folder file at a time; the SDK's
metric points are counted over the whole run, since a series' points can share a second.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pyarrow as pa

from sagellm_obs import semconv as sc
from sagellm_obs.clickhouse import ddl, typed
from sagellm_obs.clickhouse.connect import connect
from sagellm_obs.clickhouse.rows import attribute_map, metric_rows, span_rows, step_rows
from sagellm_obs.frames import files
from sagellm_obs.frames.sources import read_manifest
from sagellm_obs.store import layout
from sagellm_obs.store.reader import Errors, ReadReport, iter_jsonl

_TS = pa.timestamp("ns", tz="UTC")
_MAP = pa.map_(pa.string(), pa.string())
_EXEMPLARS = {
    "Exemplars.FilteredAttributes": pa.list_(_MAP),
    "Exemplars.TimeUnix": pa.list_(_TS),
    "Exemplars.Value": pa.list_(pa.float64()),
    "Exemplars.SpanId": pa.list_(pa.string()),
    "Exemplars.TraceId": pa.list_(pa.string()),
}
_METRIC_COMMON = {
    "ResourceAttributes": _MAP,
    "ResourceSchemaUrl": pa.string(),
    "ScopeName": pa.string(),
    "ScopeVersion": pa.string(),
    "ScopeAttributes": _MAP,
    "ScopeDroppedAttrCount": pa.uint32(),
    "ScopeSchemaUrl": pa.string(),
    "ServiceName": pa.string(),
    "MetricName": pa.string(),
    "MetricDescription": pa.string(),
    "MetricUnit": pa.string(),
    "Attributes": _MAP,
    "StartTimeUnix": _TS,
    "TimeUnix": _TS,
    "Flags": pa.uint32(),
    **_EXEMPLARS,
}
ARROW_SCHEMAS: dict[str, pa.Schema] = {
    ddl.TRACES: pa.schema(
        {
            "Timestamp": _TS,
            "TraceId": pa.string(),
            "SpanId": pa.string(),
            "ParentSpanId": pa.string(),
            "TraceState": pa.string(),
            "SpanName": pa.string(),
            "SpanKind": pa.string(),
            "ServiceName": pa.string(),
            "ResourceAttributes": _MAP,
            "ScopeName": pa.string(),
            "ScopeVersion": pa.string(),
            "SpanAttributes": _MAP,
            "Duration": pa.uint64(),
            "StatusCode": pa.string(),
            "StatusMessage": pa.string(),
            "Events.Timestamp": pa.list_(_TS),
            "Events.Name": pa.list_(pa.string()),
            "Events.Attributes": pa.list_(_MAP),
            "Links.TraceId": pa.list_(pa.string()),
            "Links.SpanId": pa.list_(pa.string()),
            "Links.TraceState": pa.list_(pa.string()),
            "Links.Attributes": pa.list_(_MAP),
        }
    ),
    ddl.GAUGE: pa.schema({**_METRIC_COMMON, "Value": pa.float64()}),
    ddl.SUM: pa.schema(
        {
            **_METRIC_COMMON,
            "Value": pa.float64(),
            "AggregationTemporality": pa.int32(),
            "IsMonotonic": pa.bool_(),
        }
    ),
    ddl.HISTOGRAM: pa.schema(
        {
            **_METRIC_COMMON,
            "Count": pa.uint64(),
            "Sum": pa.float64(),
            "BucketCounts": pa.list_(pa.uint64()),
            "ExplicitBounds": pa.list_(pa.float64()),
            "Min": pa.float64(),
            "Max": pa.float64(),
            "AggregationTemporality": pa.int32(),
        }
    ),
}
"""The Arrow columns inserted into each table (the exporter's insert column lists)."""


@dataclass
class ExportResult:
    """What an export did, per table kind (``traces``, ``gauge``, ``sum``, ``histogram``).

    Attributes:
        tables: The tables written.
        inserted: Rows inserted.
        present: Rows left out because the table already held them (a repeated export).
        report: Lines of the run folder that were skipped (``errors="skip"``).
    """

    tables: ddl.Tables
    inserted: dict[str, int] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)
    report: ReadReport = field(default_factory=ReadReport)


Progress = Callable[[str, int, int], None]
"""``progress(file, rows_done, rows_total)``: a run-folder file's rows inserted so far."""


def export_clickhouse(
    run_dir: str | Path,
    target: Any,
    *,
    database: str | None = None,
    tables: ddl.Tables | None = None,
    ttl_days: int = 0,
    batch_rows: int = 50_000,
    errors: Errors = "raise",
    progress: Progress | None = None,
    typed_columns: bool = True,
) -> ExportResult:
    """Insert a run folder's spans, metric points and engine steps into the exporter's tables.

    Args:
        run_dir: The run folder.
        target: A DSN (``clickhouse://user:pass@host:8123/db``, ``chdb:PATH``), a
            ``clickhouse_connect`` client or a chdb session.
        database: The database (default: the DSN's, else ``default``); overrides ``tables``'.
        tables: Table names (the exporter's defaults otherwise).
        ttl_days: TTL of tables this call creates (0: none), as the exporter's ``ttl`` option.
        batch_rows: Rows per INSERT.
        errors: A malformed line of the run folder raises (``"raise"``) or is skipped and
            counted in the result's report (``"skip"``).
        progress: ``progress(file, rows_inserted, rows_to_insert)`` after each batch of each
            file (the CLI draws a progress bar with it).
        typed_columns: Add the optional typed columns to the traces table when it lacks them
            (:mod:`~sagellm_obs.clickhouse.typed`; filled for the rows inserted from then on,
            computed from the attribute Map for older ones until
            :func:`~sagellm_obs.clickhouse.add_typed_columns` materializes them).

    Returns:
        Rows inserted and rows already present, per table.

    Raises:
        FileNotFoundError: ``run_dir`` is not a run folder.
        LayoutError: An existing table is not in the exporter's layout.
        ClickHouseError: The engine refused a statement.
    """
    folder = Path(run_dir)
    if not layout.is_run_folder(folder):
        raise FileNotFoundError(f"not a run folder: {folder}")
    conn, dsn_db = connect(target)
    names = tables or ddl.Tables()
    names = ddl.Tables(
        database=database or (dsn_db if tables is None and dsn_db else names.database),
        traces=names.traces,
        gauge=names.gauge,
        sum=names.sum,
        histogram=names.histogram,
    )
    columns = _prepare(conn, names, ttl_days)
    if typed_columns:
        typed.add_to(conn, names, materialize=False)
    result = ExportResult(
        names, inserted=dict.fromkeys(ddl.KINDS, 0), present=dict.fromkeys(ddl.KINDS, 0)
    )
    # Client timings and KV cache events are not OTel data: they stay in the run folder.
    found = [
        (p, k) for p, k in files.discover(folder) if k not in (files.CLIENT, files.KV_EVENTS_KIND)
    ]
    resource = _run_resource(folder, found)
    version = _version()
    # One file at a time: memory is bounded by a file's rows (files rotate), not the run's.
    # The SDK's metric points wait for the whole run: the same series' points can share a
    # second (the current layout's precision) across files, so they are counted run-wide.
    deferred: dict[str, list[dict[str, Any]]] = {table: [] for table in ddl.KINDS}
    for path, kind in found:
        rows = _file_rows(path, kind, errors, result.report, resource, version)
        if kind == files.OTLP:
            for table in (ddl.GAUGE, ddl.SUM, ddl.HISTOGRAM):
                deferred[table].extend(rows[table])
                rows[table] = []
        _insert(conn, names, columns, rows, result, path.name, batch_rows, progress)
    _insert(conn, names, columns, deferred, result, "metric points", batch_rows, progress)
    return result


def _insert(
    conn: Any,
    names: ddl.Tables,
    columns: dict[str, dict[str, str]],
    rows: dict[str, list[dict[str, Any]]],
    result: ExportResult,
    label: str,
    batch_rows: int,
    progress: Progress | None,
) -> None:
    """Insert the rows the tables do not hold yet (see the module docstring)."""
    new: dict[str, list[dict[str, Any]]] = {}
    for table in ddl.KINDS:
        ns = ddl.time_is_ns(columns[table], table)
        # A multiset: as many copies of a key as the table lacks (identical points can repeat).
        held = _present_keys(conn, names, table, rows[table], ns)
        new[table] = []
        for row in rows[table]:
            key = _key(table, row, ns)
            if held[key] > 0:
                held[key] -= 1
            else:
                new[table].append(row)
        result.present[table] += len(rows[table]) - len(new[table])
    total, done = sum(len(r) for r in new.values()), 0
    if progress is not None and any(rows.values()):
        progress(label, 0, total)
    for table in ddl.KINDS:
        for start in range(0, len(new[table]), batch_rows):
            batch = new[table][start : start + batch_rows]
            data = pa.Table.from_pylist(batch, schema=ARROW_SCHEMAS[table])
            conn.insert_arrow(names.database, names.name(table), data)
            result.inserted[table] += len(batch)
            done += len(batch)
            if progress is not None:
                progress(label, done, total)


def _prepare(conn: Any, names: ddl.Tables, ttl_days: int) -> dict[str, dict[str, str]]:
    """Each table's columns, creating missing tables and checking existing ones."""
    found = {kind: ddl.describe(conn, names, kind) for kind in ddl.KINDS}
    missing = tuple(kind for kind, cols in found.items() if cols is None)
    if missing:
        ddl.create_tables(conn, names, ttl_days=ttl_days, kinds=missing)
    out = {}
    for kind in ddl.KINDS:
        cols = found[kind] if found[kind] is not None else ddl.describe(conn, names, kind)
        assert cols is not None
        ddl.check_layout(cols, names, kind)
        out[kind] = cols
    return out


def _file_rows(
    path: Path,
    kind: str,
    errors: Errors,
    report: ReadReport,
    resource: list[tuple[str, str]],
    version: str,
) -> dict[str, list[dict[str, Any]]]:
    """One file's rows per table kind, in line order."""
    out: dict[str, list[dict[str, Any]]] = {table: [] for table in ddl.KINDS}
    for _, obj in iter_jsonl(path, errors=errors, report=report):
        if kind == files.STEPS_KIND:
            if obj.get(sc.STEP_TIME_UNIX_NANO) is None or obj.get(sc.STEP_INDEX) is None:
                continue  # not a step record (the loader rejects it too)
            for table, row in step_rows(obj, resource, version):
                out[table].append(row)
            continue
        out[ddl.TRACES].extend(span_rows(obj))
        for table, row in metric_rows(obj):
            out[table].append(row)
    return out


def _run_resource(folder: Path, found: list[tuple[Path, str]]) -> list[tuple[str, str]]:
    """The resource of the step points: the run's own OTLP resource, else one from its manifest."""
    for path, kind in found:
        if kind != files.OTLP:
            continue
        with open(path, "rb") as fh:
            first = fh.readline()
        try:
            obj = json.loads(first)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        for key in ("resourceMetrics", "resourceSpans"):
            for res in obj.get(key) or ():
                return attribute_map((res.get("resource") or {}).get("attributes"))
    return _manifest_resource(read_manifest(folder))


def _manifest_resource(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    out = [("service.name", sc.SERVICE_NAME_DEFAULT)]
    for key, attr in (("run_id", sc.RESOURCE_RUN_ID), ("engine_id", sc.RESOURCE_ENGINE_ID)):
        if manifest.get(key) is not None:
            out.append((attr, str(manifest[key])))
    return out


def _version() -> str:
    try:
        return version("sagellm-obs")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return ""


# --- idempotency ------------------------------------------------------------------------------

_ATTR_KEY_SQL = (
    "arrayStringConcat(arraySort(arrayMap((k, v) -> concat(k, '=', v), "
    "mapKeys(Attributes), mapValues(Attributes))), '\\x1f')"
)


def _key(kind: str, row: dict[str, Any], ns: bool) -> tuple[Any, ...]:
    """A row's identity: the span, or the point's series, time (at the table's precision) and
    value (two points of a series can share a second)."""
    if kind == ddl.TRACES:
        return (row["TraceId"], row["SpanId"])
    t = int(row["TimeUnix"])
    if not ns:
        t = t // 1_000_000_000 * 1_000_000_000
    attrs = "\x1f".join(sorted(f"{k}={v}" for k, v in row["Attributes"]))
    if kind == ddl.HISTOGRAM:
        return (row["MetricName"], t, attrs, int(row["Count"]), float(row["Sum"]))
    return (row["MetricName"], t, attrs, float(row["Value"]))


def _present_keys(
    conn: Any, names: ddl.Tables, kind: str, rows: list[dict[str, Any]], ns: bool
) -> Counter[tuple[Any, ...]]:
    """How often the table holds each key (read within the rows' time range and run)."""
    if not rows:
        return Counter()
    time_col = "Timestamp" if kind == ddl.TRACES else "TimeUnix"
    times = [int(r[time_col]) for r in rows]
    params: dict[str, Any] = {"lo": min(times) // 1_000_000_000, "hi": max(times) // 10**9 + 1}
    where = [
        f"{time_col} >= toDateTime64({{lo:Int64}}, 0)",
        f"{time_col} < toDateTime64({{hi:Int64}}, 0)",
    ]
    runs = _run_ids(rows)
    if runs:
        where.append(f"ResourceAttributes['{sc.RESOURCE_RUN_ID}'] IN {{runs:Array(String)}}")
        params["runs"] = sorted(runs)
    if kind == ddl.TRACES:
        select = "TraceId AS a, SpanId AS b"
    else:
        values = "Count AS d, Sum AS e" if kind == ddl.HISTOGRAM else "Value AS d"
        select = (
            f"MetricName AS a, toUnixTimestamp64Nano(toDateTime64(TimeUnix, 9)) AS b, "
            f"{_ATTR_KEY_SQL} AS c, {values}"
        )
    table = conn.query_arrow(
        f"SELECT {select} FROM {names.qualified(kind)} WHERE {' AND '.join(where)}", params
    )
    cols = [table.column(name).to_pylist() for name in table.column_names]
    return Counter(zip(*cols, strict=True)) if cols else Counter()


def _run_ids(rows: Iterable[dict[str, Any]]) -> set[str]:
    runs = set()
    for row in rows:
        value = dict(row["ResourceAttributes"]).get(sc.RESOURCE_RUN_ID)
        if value is None:
            return set()  # a row without a run id: do not narrow by run
        runs.add(value)
    return runs


def summary(result: ExportResult) -> str:
    """One line per table: rows inserted and rows already present."""
    lines = []
    for kind in ddl.KINDS:
        lines.append(
            f"{result.tables.label(kind)}: {result.inserted.get(kind, 0)} inserted, "
            f"{result.present.get(kind, 0)} already present"
        )
    return "\n".join(lines) + (
        f"\nskipped {len(result.report.skipped)} bad line(s)" if result.report.skipped else ""
    )
