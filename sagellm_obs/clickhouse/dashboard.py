"""The Grafana dashboard on the exporter's ``otel_traces`` table (ClickHouse datasource plugin).

``python -m sagellm_obs.clickhouse.dashboard`` writes ``dashboards/grafana-clickhouse/
sagellm-clickhouse.json``; ``--check`` fails while the file differs (a test runs it). Each panel's
SQL picks the request spans as :func:`~sagellm_obs.frames.spans.requests_of` does, with the same
attribute keys (:func:`~sagellm_obs.clickhouse.queries.is_request`), and uses the plugin's
macros ``$__timeFilter(Timestamp)`` and ``$__timeInterval(Timestamp)`` (Grafana fills them in).
The tests run every panel in chdb with the macros filled in as the plugin fills them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sagellm_obs.clickhouse.queries import is_request, request_value

DATABASE = "otel"  # the collector's `database` (dashboards/otel-collector.yaml)
TABLE = f"{DATABASE}.otel_traces"
DS = {"type": "grafana-clickhouse-datasource", "uid": "clickhouse"}
UID = "sagellm-obs-clickhouse"
PATH = Path("dashboards") / "grafana-clickhouse" / "sagellm-clickhouse.json"
TIMESERIES, TABLE_FORMAT = 0, 1  # the plugin's `format` values
SLOWEST = 20  # rows of the slowest-requests table

_REQUESTS = f"FROM {TABLE} WHERE $__timeFilter(Timestamp) AND {is_request(TABLE)}"


def _sql(*lines: str) -> str:
    return "\n".join(lines)


def panel_sql() -> dict[str, str]:
    """Each panel's title → its SQL (Grafana macros unfilled)."""
    ttft = request_value("ttft_s", "Float64")
    model = request_value("model", "String")
    inp = request_value("input_tokens", "Int64")
    cached = request_value("cached_tokens", "Int64")
    e2e = f"coalesce({request_value('e2e_s', 'Float64')}, Duration / 1e9)"
    return {
        "TTFT p50 / p99": _sql(
            "SELECT $__timeInterval(Timestamp) AS time,",
            "  quantileExactInclusive(0.5)(ttft) AS p50,",
            "  quantileExactInclusive(0.99)(ttft) AS p99",
            f"FROM (SELECT Timestamp, {ttft} AS ttft {_REQUESTS})",
            "WHERE ttft IS NOT NULL",
            "GROUP BY time ORDER BY time",
        ),
        "Requests per model": _sql(
            "SELECT model, count() AS requests",
            f"FROM (SELECT {model} AS model {_REQUESTS})",
            "GROUP BY model ORDER BY model NULLS LAST",
        ),
        "Prefix cache hit rate per model": _sql(
            "SELECT model, sum(input) AS input_tokens, sum(cached) AS cached_tokens,",
            "  if(sum(input) > 0, sum(cached) / sum(input), NULL) AS prefix_hit_rate",
            f"FROM (SELECT {model} AS model, {inp} AS input, {cached} AS cached {_REQUESTS})",
            "GROUP BY model ORDER BY model NULLS LAST",
        ),
        "Slowest requests": _sql(
            "SELECT TraceId AS trace_id, model, e2e_s, ttft_s, output_tokens",
            f"FROM (SELECT TraceId, {model} AS model, {e2e} AS e2e_s, {ttft} AS ttft_s,",
            f"  {request_value('output_tokens', 'Int64')} AS output_tokens {_REQUESTS})",
            f"ORDER BY e2e_s DESC, trace_id LIMIT {SLOWEST}",
        ),
    }


_LAYOUT: dict[str, tuple[str, int, str, dict[str, int]]] = {
    # title: (panel type, format, unit, gridPos)
    "TTFT p50 / p99": ("timeseries", TIMESERIES, "s", {"x": 0, "y": 0, "w": 12, "h": 8}),
    "Requests per model": ("barchart", TABLE_FORMAT, "short", {"x": 12, "y": 0, "w": 6, "h": 8}),
    "Prefix cache hit rate per model": (
        "table",
        TABLE_FORMAT,
        "none",
        {"x": 18, "y": 0, "w": 6, "h": 8},
    ),
    "Slowest requests": ("table", TABLE_FORMAT, "s", {"x": 0, "y": 8, "w": 24, "h": 10}),
}
_DESCRIPTIONS = {
    "TTFT p50 / p99": "Time to first token of the requests arriving in each interval (exact "
    "quantiles, linear interpolation), from the request spans' attributes.",
    "Requests per model": "Request spans in the time range, per model (gen_ai.request.model, "
    "else gen_ai.response.model).",
    "Prefix cache hit rate per model": "Prompt tokens read from the prefix cache / prompt "
    "tokens, summed over the requests that report them.",
    "Slowest requests": "The request spans with the longest end-to-end latency; the trace id "
    "opens the trace in Tempo.",
}


def _tempo_link() -> dict[str, Any]:
    query = {
        "datasource": "tempo",
        "queries": [{"refId": "A", "queryType": "traceql", "query": "${__value.raw}"}],
    }
    return {
        "matcher": {"id": "byName", "options": "trace_id"},
        "properties": [
            {
                "id": "links",
                "value": [
                    {
                        "title": "Open in Tempo",
                        "url": "/explore?left=" + json.dumps(query, separators=(",", ":")),
                    }
                ],
            }
        ],
    }


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    panels = []
    for i, (title, sql) in enumerate(panel_sql().items(), start=1):
        kind, fmt, unit, grid = _LAYOUT[title]
        overrides = [_tempo_link()] if title == "Slowest requests" else []
        panels.append(
            {
                "id": i,
                "type": kind,
                "title": title,
                "description": _DESCRIPTIONS[title],
                "datasource": DS,
                "gridPos": grid,
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": overrides},
                "options": {},
                "targets": [
                    {
                        "refId": "A",
                        "datasource": DS,
                        "editorType": "sql",
                        "format": fmt,
                        "queryType": "timeseries" if fmt == TIMESERIES else "table",
                        "rawSql": sql,
                    }
                ],
            }
        )
    return {
        "uid": UID,
        "title": "sagellm-obs: traces in ClickHouse",
        "tags": ["sagellm-obs", "clickhouse"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []},
        "links": [],
        "panels": panels,
    }


def render() -> str:
    """The dashboard file's text."""
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the dashboard file (run from the repository root); ``--check`` only compares."""
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        same = PATH.exists() and PATH.read_text() == text
        if not same:
            print(f"{PATH} differs: run python -m sagellm_obs.clickhouse.dashboard")
        return 0 if same else 1
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
