"""ClickHouse: the OpenTelemetry Collector exporter's tables, read into frames and written to.

>>> from sagellm_obs import frames
>>> from sagellm_obs.clickhouse import export_clickhouse, ttft_quantiles_per_window
>>> export_clickhouse("sagellm-runs/20260101T000000Z-abc123", "chdb:runs.chdb")  # doctest: +SKIP
>>> run = frames.load(frames.clickhouse_source("chdb:runs.chdb", model="tiny"))  # doctest: +SKIP
>>> ttft_quantiles_per_window("chdb:runs.chdb", every="1m")  # doctest: +SKIP

Needs the ``[clickhouse]`` extra (chdb, clickhouse-connect). Importing this package imports
neither: the names below load their modules on first use. See docs/clickhouse.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagellm_obs.clickhouse.connect import (
        ClickHouseConnectionError,
        ClickHouseError,
        close_chdb,
        open_chdb,
        parse_dsn,
    )
    from sagellm_obs.clickhouse.ddl import LayoutError, Tables, create_tables
    from sagellm_obs.clickhouse.queries import prefix_hit_rate_per_model, ttft_quantiles_per_window
    from sagellm_obs.clickhouse.read import MalformedRowError
    from sagellm_obs.clickhouse.source import ClickHouseSource, clickhouse_source
    from sagellm_obs.clickhouse.typed import add_typed_columns
    from sagellm_obs.clickhouse.write import ExportResult, export_clickhouse

_WHERE = {
    "ClickHouseConnectionError": "connect",
    "ClickHouseError": "connect",
    "close_chdb": "connect",
    "open_chdb": "connect",
    "parse_dsn": "connect",
    "LayoutError": "ddl",
    "Tables": "ddl",
    "create_tables": "ddl",
    "prefix_hit_rate_per_model": "queries",
    "ttft_quantiles_per_window": "queries",
    "MalformedRowError": "read",
    "add_typed_columns": "typed",
    "ClickHouseSource": "source",
    "clickhouse_source": "source",
    "ExportResult": "write",
    "export_clickhouse": "write",
}

__all__ = [
    "ClickHouseConnectionError",
    "ClickHouseError",
    "ClickHouseSource",
    "ExportResult",
    "LayoutError",
    "MalformedRowError",
    "Tables",
    "add_typed_columns",
    "clickhouse_source",
    "close_chdb",
    "create_tables",
    "export_clickhouse",
    "open_chdb",
    "parse_dsn",
    "prefix_hit_rate_per_model",
    "ttft_quantiles_per_window",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
