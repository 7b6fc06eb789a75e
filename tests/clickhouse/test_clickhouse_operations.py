"""The operations path: collector → ClickHouse → Grafana, checked without containers.

- The collector's ``clickhouse`` exporter block uses only keys of the exporter's documented config
  and agrees with compose.yaml and the Grafana datasource (host, port, database, credentials).
- Every panel of the ClickHouse dashboard runs in chdb, with Grafana's macros filled in as the
  plugin fills them, against the exporter's tables filled by the writer from a real run folder and
  from spans vLLM emitted; its figures equal the same figures computed in Polars over the frames
  loaded from those files (not from ClickHouse).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from sagellm_obs import frames
from sagellm_obs.clickhouse import dashboard
from sagellm_obs.clickhouse.connect import ChdbConnection
from sagellm_obs.clickhouse.ddl import Tables
from sagellm_obs.clickhouse.write import export_clickhouse
from tests.clickhouse.conftest import insert_otlp_spans, recorded_copy
from tests.frames.frames_otlp import WrittenRun

ROOT = Path(__file__).parents[2]
DASHBOARDS = ROOT / "dashboards"

# The exporter's documented config keys: the properties of
# exporter/clickhouseexporter/config.schema.yaml (opentelemetry-collector-contrib, commit
# 09ea2f421d7b) plus the exporterhelper timeout / retry / queue blocks it includes.
EXPORTER_KEYS = {
    "async_insert", "cluster_name", "compress", "connection_params", "create_schema", "database",
    "endpoint", "json", "logs_table_name", "metrics_table_name", "metrics_tables", "password",
    "profiles_table_name", "sending_queue", "table_engine", "tls", "traces_table_name", "ttl",
    "username", "timeout", "retry_on_failure",
}  # fmt: skip
RETRY_KEYS = {"enabled", "initial_interval", "max_interval", "max_elapsed_time", "multiplier",
              "randomization_factor"}  # fmt: skip
INTERVAL_S = 60  # Grafana's $__interval for the TTFT panel in these tests


def _yaml(name: str) -> Any:
    return yaml.safe_load((DASHBOARDS / name).read_text())


def test_dashboard_file_is_what_the_module_writes() -> None:
    path = ROOT / dashboard.PATH
    assert path.read_text() == dashboard.render(), "run: python -m sagellm_obs.clickhouse.dashboard"


def test_collector_clickhouse_exporter_uses_documented_keys_and_matches_compose() -> None:
    collector = _yaml("otel-collector.yaml")
    compose = _yaml("compose.yaml")
    exporter = collector["exporters"]["clickhouse"]
    assert set(exporter) <= EXPORTER_KEYS, set(exporter) - EXPORTER_KEYS
    assert set(exporter["retry_on_failure"]) <= RETRY_KEYS
    # traces and metrics both reach ClickHouse, next to the Tempo / Prometheus path
    pipes = collector["service"]["pipelines"]
    assert pipes["traces"]["exporters"] == ["otlp/tempo", "clickhouse"]
    assert pipes["metrics"]["exporters"] == ["prometheus", "clickhouse"]
    # the exporter reaches compose's clickhouse service on its native port
    m = re.fullmatch(r"tcp://([\w-]+):(\d+)(\?.*)?", exporter["endpoint"])
    assert m and m.group(1) in compose["services"] and m.group(2) == "9000", exporter["endpoint"]
    assert exporter["database"] == dashboard.DATABASE
    assert exporter["traces_table_name"] == dashboard.TABLE.split(".")[1] == Tables().traces
    server = compose["services"][m.group(1)]
    assert re.search(r":\d+\.\d+\.\d+$", server["image"]), server["image"]  # pinned
    env = server["environment"]
    assert (exporter["username"], exporter["password"]) == (
        env["CLICKHOUSE_USER"],
        env["CLICKHOUSE_PASSWORD"],
    )
    assert "127.0.0.1:8123:8123" in server["ports"]  # frames.load from the host, loopback only
    assert m.group(1) in compose["services"]["otel-collector"]["depends_on"]


def test_grafana_provisions_the_clickhouse_datasource_and_dashboard() -> None:
    compose = _yaml("compose.yaml")
    grafana = compose["services"]["grafana"]
    plugin = grafana["environment"]["GF_INSTALL_PLUGINS"]
    assert re.fullmatch(r"grafana-clickhouse-datasource \d+\.\d+\.\d+", plugin), plugin
    ds = _yaml("provisioning/datasources/clickhouse.yaml")["datasources"]
    assert len(ds) == 1
    (source,) = ds
    assert source["type"] == dashboard.DS["type"] and source["uid"] == dashboard.DS["uid"]
    jd = source["jsonData"]
    server = compose["services"][jd["host"]]
    assert (jd["protocol"], jd["port"]) == ("http", 8123)
    assert jd["username"] == server["environment"]["CLICKHOUSE_USER"]
    assert source["secureJsonData"]["password"] == server["environment"]["CLICKHOUSE_PASSWORD"]
    assert jd["defaultDatabase"] == jd["traces"]["defaultDatabase"] == dashboard.DATABASE
    assert jd["traces"]["defaultTable"] == dashboard.TABLE.split(".")[1]
    # the dashboard provider's folder is the one compose mounts dashboards/grafana-clickhouse on
    (provider,) = _yaml("provisioning/dashboards/clickhouse.yaml")["providers"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"])
    assert mounts["./" + dashboard.PATH.parent.name] == provider["options"]["path"]
    board = json.loads((ROOT / dashboard.PATH).read_text())
    for panel in board["panels"]:
        refs = [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]
        assert all(r == dashboard.DS for r in refs), panel["title"]


# --- every panel against chdb ---------------------------------------------------------------


def fill_macros(sql: str, start_s: int, end_s: int, interval_s: int) -> str:
    """Grafana's macros as the ClickHouse plugin fills them (pkg/macros/macros.go)."""
    out = re.sub(
        r"\$__timeFilter\(([^)]*)\)",
        lambda m: f"{m.group(1)} >= toDateTime({start_s}) AND {m.group(1)} <= toDateTime({end_s})",
        sql,
    )
    out = re.sub(
        r"\$__timeInterval\(([^)]*)\)",
        lambda m: f"toStartOfInterval(toDateTime({m.group(1)}), INTERVAL {interval_s} second)",
        out,
    )
    assert "$" not in out, out
    return out


@pytest.fixture
def otel(chdb: ChdbConnection, written: WrittenRun, tmp_path: Path) -> pl.DataFrame:
    """The ``otel`` database filled by the writer (a run folder) and with recorded vLLM spans;
    the ``requests`` frame of the same files, loaded without ClickHouse."""
    tables = Tables(database=dashboard.DATABASE)
    chdb.command(f"DROP DATABASE IF EXISTS {dashboard.DATABASE}")
    export_clickhouse(written.path, chdb, database=dashboard.DATABASE)
    recorded = recorded_copy("vllm_and_ours.jsonl", tmp_path / "recorded")
    assert insert_otlp_spans(chdb, tables, recorded) > 0
    requests = frames.load([written.path, recorded], cache=False).requests
    assert set(requests["source"]) == {"sagellm"}  # vLLM's spans under ours make no row
    assert requests["model"].n_unique() >= 2
    return requests


def _seconds(t: datetime) -> float:
    return (t - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds()


def _ranges(requests: pl.DataFrame) -> list[tuple[int, int]]:
    """The whole time range, and one that leaves out the last requests (whole seconds)."""
    arrivals = sorted(_seconds(t) for t in requests["arrival"])
    whole = (math.floor(arrivals[0]), math.ceil(arrivals[-1]) + 1)
    cut = math.floor(arrivals[len(arrivals) // 2]) - 1
    assert any(a > cut for a in arrivals) and any(a <= cut for a in arrivals)
    return [whole, (whole[0], cut)]


def _run(chdb: ChdbConnection, title: str, start_s: int, end_s: int) -> pl.DataFrame:
    sql = fill_macros(dashboard.panel_sql()[title], start_s, end_s, INTERVAL_S)
    out = pl.from_arrow(chdb.query_arrow(sql))
    assert isinstance(out, pl.DataFrame)
    return out


def _in_range(requests: pl.DataFrame, start_s: int, end_s: int) -> pl.DataFrame:
    lo = datetime.fromtimestamp(start_s, tz=timezone.utc)
    hi = datetime.fromtimestamp(end_s, tz=timezone.utc)
    return requests.filter(pl.col("arrival").is_between(lo, hi, closed="both"))


def _sum_or_null(col: str) -> pl.Expr:
    """SQL's sum over a nullable column: null when every value is null."""
    return pl.when(pl.col(col).is_not_null().any()).then(pl.col(col).sum())


def test_every_panel_equals_the_frames(chdb: ChdbConnection, otel: pl.DataFrame) -> None:
    assert set(dashboard.panel_sql()) == {
        "TTFT p50 / p99",
        "Requests per model",
        "Prefix cache hit rate per model",
        "Slowest requests",
    }
    for start_s, end_s in _ranges(otel):
        req = _in_range(otel, start_s, end_s)
        assert req.height > 0

        got = _run(chdb, "TTFT p50 / p99", start_s, end_s)
        want = (
            req.filter(pl.col("ttft_s").is_not_null())
            .group_by(pl.col("arrival").dt.truncate(f"{INTERVAL_S}s").alias("time"))
            .agg(
                pl.col("ttft_s").quantile(0.5, "linear").alias("p50"),
                pl.col("ttft_s").quantile(0.99, "linear").alias("p99"),
            )
            .sort("time")
        )
        # a DateTime reaches Arrow as epoch seconds (UInt32) through chdb
        time = got["time"]
        if time.dtype.is_integer():
            got = got.with_columns(pl.from_epoch(pl.col("time").cast(pl.Int64), "s"))
        got = got.with_columns(pl.col("time").dt.cast_time_unit("us").dt.replace_time_zone(None))
        want = want.with_columns(pl.col("time").dt.cast_time_unit("us").dt.replace_time_zone(None))
        assert_frame_equal(got, want)

        got = _run(chdb, "Requests per model", start_s, end_s)
        want = req.group_by("model").agg(pl.len().alias("requests")).sort("model", nulls_last=True)
        assert_frame_equal(got, want, check_dtypes=False)

        got = _run(chdb, "Prefix cache hit rate per model", start_s, end_s)
        want = (
            req.group_by("model")
            .agg(
                _sum_or_null("input_tokens").alias("input_tokens"),
                _sum_or_null("cached_tokens").alias("cached_tokens"),
            )
            .with_columns(
                pl.when(pl.col("input_tokens") > 0)
                .then(pl.col("cached_tokens") / pl.col("input_tokens"))
                .alias("prefix_hit_rate")
            )
            .sort("model", nulls_last=True)
        )
        assert_frame_equal(got, want, check_dtypes=False)

        got = _run(chdb, "Slowest requests", start_s, end_s)
        want = (
            req.sort(["e2e_s", "trace_id"], descending=[True, False])
            .head(dashboard.SLOWEST)
            .select("trace_id", "model", "e2e_s", "ttft_s", "output_tokens")
        )
        assert_frame_equal(got, want, check_dtypes=False)
