"""Fleet pieces without an engine: routing, endpoints, engine ids, the stat logger's ranks."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from sagellm_obs import semconv as sc
from sagellm_obs.engine.stat_logger import StepSink
from sagellm_obs.server.serve import (
    DataParallelError,
    apply_data_parallel,
    bind_socket,
    check_data_parallel,
    replica_engine_id,
)
from sagellm_obs.workload.routing import (
    ROUTES,
    ReplicaStats,
    make_router,
    parse_endpoints,
)


def test_parse_endpoints() -> None:
    assert parse_endpoints("http://127.0.0.1:8001/v1/, http://127.0.0.1:8002") == [
        "http://127.0.0.1:8001",
        "http://127.0.0.1:8002",
    ]
    assert parse_endpoints(["http://a:1", "http://b:2,http://c:3"]) == [
        "http://a:1",
        "http://b:2",
        "http://c:3",
    ]
    for bad in ("", "127.0.0.1:8000", "http://a:1,http://a:1/v1"):
        with pytest.raises(ValueError, match="endpoint"):
            parse_endpoints(bad)


def test_round_robin_takes_turns() -> None:
    replicas = [ReplicaStats(f"http://r{i}") for i in range(3)]
    router = make_router("round-robin", replicas)
    assert [router.pick().endpoint for _ in range(6)] == [r.endpoint for r in replicas] * 2


def test_least_loaded_goes_where_fewest_are_in_flight() -> None:
    a, b = ReplicaStats("http://a"), ReplicaStats("http://b")
    router = make_router("least-loaded", [a, b])
    first = router.pick()
    assert first is a  # a tie: the first listed
    a.sent, a.in_flight = 1, 1
    assert router.pick() is b
    b.sent, b.in_flight = 1, 1
    assert router.pick() is a  # tie on both: a first
    a.sent, a.in_flight = 2, 2
    b.in_flight = 0  # b finished its request: it gets the next ones until it catches up
    assert router.pick() is b
    with pytest.raises(ValueError, match="round-robin, least-loaded"):
        make_router("random", [a])
    assert set(ROUTES) == {"round-robin", "least-loaded"}


def test_replica_engine_id_and_bound_socket() -> None:
    assert replica_engine_id("127.0.0.1", 8001) == "127.0.0.1:8001"
    assert replica_engine_id("::1", 8001) == "[::1]:8001"
    sock = bind_socket("127.0.0.1", 0)
    try:
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


def test_data_parallel_checks() -> None:
    from sagellm_obs.engine.config import EngineConfig

    check_data_parallel(1)
    with pytest.raises(DataParallelError, match="1 or more"):
        check_data_parallel(0)
    cfg = apply_data_parallel(EngineConfig(in_process=True), 2)
    assert cfg.extra["data_parallel_size"] == 2 and cfg.in_process is None
    assert "data_parallel_size" in cfg.engine_args("/m")
    assert "data_parallel_size" not in apply_data_parallel(EngineConfig(), 1).engine_args("/m")


def test_cli_refuses_a_bad_data_parallel_size() -> None:
    from sagellm_obs.cli import app

    result = CliRunner().invoke(app, ["serve", "--data-parallel-size", "0"])
    assert result.exit_code == 2
    assert "1 or more" in result.output


class _Telemetry:
    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def submit_step(self, step: dict[str, Any]) -> None:
        self.steps.append(step)


def _stats(kv: float, finished: tuple[str, ...] = ()) -> tuple[Any, Any]:
    scheduler = SimpleNamespace(
        num_running_reqs=1,
        num_waiting_reqs=0,
        kv_cache_usage=kv,
        prefix_cache_stats=SimpleNamespace(queries=10, hits=4),
    )
    iteration = SimpleNamespace(
        iteration_timestamp=1_800_000_000.0,
        finished_requests=[SimpleNamespace(request_id=r) for r in finished],
        num_prompt_tokens=5,
        prompt_token_stats=SimpleNamespace(cached_tokens=2),
        num_generation_tokens=1,
        num_preempted_reqs=0,
    )
    return scheduler, iteration


def test_stat_logger_keeps_data_parallel_ranks_apart() -> None:
    tel = _Telemetry()
    sink = StepSink(lambda: tel, "127.0.0.1:8000")  # type: ignore[arg-type,return-value]
    sink.record(*_stats(0.1, ("r-a",)), engine_idx=0)
    sink.record(*_stats(0.7, ("r-b",)), engine_idx=1)
    sink.record(*_stats(0.2), engine_idx=0)
    assert [(s[sc.STEP_ENGINE_IDX], s[sc.STEP_INDEX]) for s in tel.steps] == [
        (0, 1),
        (1, 1),
        (0, 2),
    ]
    assert {s[sc.STEP_ENGINE_ID] for s in tel.steps} == {"127.0.0.1:8000"}
    assert sink.kv_usage_by_engine == {0: 0.2, 1: 0.7}
    assert sink.last_kv_usage == 0.7  # the busiest rank
    stats, idx = sink.pop_finished_on("r-b")
    assert stats.request_id == "r-b" and idx == 1
    assert sink.pop_finished("r-a").request_id == "r-a"
    assert sink.pop_finished_on("r-a") == (None, None)
    assert sink.errors == 0


def test_pipeline_step_metrics_per_rank(tmp_path: Any) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from sagellm_obs.testing import deterministic_telemetry

    reader = InMemoryMetricReader()
    tel = deterministic_telemetry(tmp_path / "run", metric_readers=[reader])
    try:
        base = {
            sc.STEP_TIME_UNIX_NANO: 1_800_000_000_000_000_000,
            sc.STEP_ENGINE_ID: "e",
            sc.STEP_INDEX: 1,
            sc.STEP_RUNNING: 1,
            sc.STEP_WAITING: 0,
            sc.STEP_PREFIX_QUERIES: 10,
            sc.STEP_PREFIX_HITS: 5,
            sc.STEP_PROMPT_TOKENS: 3,
            sc.STEP_CACHED_PROMPT_TOKENS: 0,
            sc.STEP_GENERATION_TOKENS: 1,
            sc.STEP_PREEMPTIONS: 0,
            sc.STEP_FINISHED: 0,
        }
        tel.submit_step({**base, sc.STEP_ENGINE_IDX: 0, sc.STEP_KV_USAGE: 0.25})
        tel.submit_step({**base, sc.STEP_ENGINE_IDX: 1, sc.STEP_KV_USAGE: 0.75})
        tel.submit_step({**base, sc.STEP_ENGINE_IDX: 0, sc.STEP_KV_USAGE: 0.5})
        assert tel.flush()
        data = reader.get_metrics_data()
        assert data is not None
        kv: dict[tuple[Any, Any], float] = {}
        queries: dict[tuple[Any, Any], float] = {}
        for rm in data.resource_metrics:
            for scope in rm.scope_metrics:
                for metric in scope.metrics:
                    for p in metric.data.data_points:
                        a = dict(p.attributes or {})
                        key = (a.get(sc.SAGELLM_ENGINE_ID), a.get(sc.SAGELLM_ENGINE_IDX))
                        if metric.name == sc.M_KV_USAGE.name:
                            kv[key] = p.value  # type: ignore[union-attr]
                        if metric.name == sc.M_PREFIX_QUERIES.name:
                            queries[key] = p.value  # type: ignore[union-attr]
        assert kv == {("e", 0): 0.5, ("e", 1): 0.75}
        assert queries == {("e", 0): 20, ("e", 1): 10}
    finally:
        tel.shutdown()
