"""A fleet from one ClickHouse store: two engines' run folders exported into one database load
into frames whose per-engine split equals the run folders loaded on their own."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sagellm_obs import frames
from sagellm_obs.clickhouse.connect import ChdbConnection
from sagellm_obs.clickhouse.write import export_clickhouse
from sagellm_obs.frames import fleet
from tests.frames.frames_otlp import WrittenRun, write_run

ENGINES = ("engine-a", "engine-b")
# Two different workloads, so the engines' figures differ.
BATCHES = {
    "engine-a": (
        ({"i": 0}, {"i": 1, "prefill": 0.2, "decode": 0.9, "output_tokens": 31}),
        ({"i": 2, "error_type": "timeout", "finish_reason": "error", "error_code": "TIMEOUT"},),
    ),
    "engine-b": (
        (
            {"i": 0, "queue": 0.3},
            {"i": 1, "model": "other-model", "operation": "chat", "cached_tokens": 0},
            {"i": 2, "cancelled": True, "finish_reason": "abort", "output_tokens": 1},
            {"i": 3, "decode": 2.5, "output_tokens": 64},
        ),
    ),
}
# Figures of an engine alone; the others (shares, throughputs) divide by the fleet's totals.
OWN = [
    "engine", "engine_id", "requests", "ok", "failed", "input_tokens", "output_tokens",
    "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "e2e_p50_s", "e2e_p99_s", "queue_p50_s",
    "queue_p99_s", "steps", "kv_usage_mean", "kv_usage_peak", "running_mean", "waiting_mean",
    "waiting_peak", "prefix_hit_rate",
]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, WrittenRun]:
    root = tmp_path_factory.mktemp("fleet")
    return {
        e: write_run(
            root / e, [[{**r, "engine_id": e} for r in b] for b in BATCHES[e]], engine_id=e
        )
        for e in ENGINES
    }


@pytest.fixture
def store(
    chdb: ChdbConnection, database: str, runs: dict[str, WrittenRun]
) -> frames.ClickHouseSource:
    for run in runs.values():
        export_clickhouse(run.path, chdb, database=database)
    return frames.clickhouse_source(chdb, database=database)


def _stats(f: frames.Frames) -> pl.DataFrame:
    return fleet.engine_stats(f.requests, f.steps)


def test_engine_split_equals_the_run_folders(
    store: frames.ClickHouseSource, runs: dict[str, WrittenRun]
) -> None:
    ch = frames.load(store)
    assert sorted(ch.runs["run_id"].to_list()) == sorted(r.run_id for r in runs.values())
    split = _stats(ch)
    assert split["engine_id"].to_list() == list(ENGINES)
    # each engine's own figures: those of its run folder loaded alone
    for engine, run in runs.items():
        alone = _stats(frames.load(run.path, cache=False))
        assert alone.height == 1
        assert_frame_equal(
            split.filter(pl.col("engine_id") == engine).select(OWN), alone.select(OWN)
        )
    # the fleet-relative figures: those of both folders loaded together
    both = frames.load([r.path for r in runs.values()], cache=False)
    assert_frame_equal(split, _stats(both))
    assert split["request_share"].sum() == pytest.approx(1.0)
    assert split["requests"].to_list() == [len(runs[e].records) for e in ENGINES]


def test_an_engine_filter_reads_one_engine(
    store: frames.ClickHouseSource, runs: dict[str, WrittenRun], tmp_path: Path
) -> None:
    from dataclasses import replace

    for engine, run in runs.items():
        one = frames.load(replace(store, engine_id=(engine,)))
        local = frames.load(run.path, cache=False)
        assert one.requests.sort("request_id").equals(local.requests.sort("request_id"))
        assert one.steps.equals(local.steps)
        assert set(one.spans["engine_id"]) == {engine}
