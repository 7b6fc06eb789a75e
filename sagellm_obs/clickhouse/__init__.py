"""ClickHouse: the OpenTelemetry Collector exporter's tables, read into frames and written to."""

from __future__ import annotations
