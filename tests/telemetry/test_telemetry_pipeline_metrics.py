"""configure() + the telemetry thread: request records -> metric points, step records -> store
lines and instruments."""

from __future__ import annotations

import bisect
from typing import Any

import pytest

from sagellm_obs import semconv as sc
from sagellm_obs.store import files_of, iter_jsonl
from tests.telemetry.pipeline_setup import MODEL, MakeRecord, Setup


def _expected_buckets(values: list[float], bounds: tuple[float, ...]) -> list[int]:
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[bisect.bisect_left(bounds, v)] += 1
    return counts


def _points(metric: Any) -> list[Any]:
    return list(metric.data.data_points)


def test_histograms_use_semconv_buckets_and_count_every_record(
    setup: Setup, records: MakeRecord
) -> None:
    anchor = setup.telemetry.anchor
    ok = [
        records(anchor, i, queue=0.0004 * (i + 1), prefill=0.003 * (i + 1), decode=0.02 * i)
        for i in range(6)
    ]
    failed = [
        records(
            anchor,
            10 + i,
            error_type="EngineDeadError",
            error_code="INTERNAL",
            finish_reason="error",
        )
        for i in range(2)
    ]
    setup.submit(*ok, *failed)
    metrics = setup.metrics()
    n_ok, n_all = len(ok), len(ok) + len(failed)

    def hist(spec: sc.MetricSpec, expect_count: int) -> list[Any]:
        points = _points(metrics[spec.name])
        assert sum(p.count for p in points) == expect_count, spec.name
        for p in points:
            assert tuple(p.explicit_bounds) == spec.buckets, spec.name
        assert metrics[spec.name].unit == spec.unit
        return points

    (ttft,) = hist(sc.M_TTFT, n_ok)
    assert list(ttft.bucket_counts) == _expected_buckets([r.ttft for r in ok], sc.BUCKETS_TTFT)
    assert ttft.sum == pytest.approx(sum(r.ttft for r in ok))
    (queue,) = hist(sc.M_QUEUE, n_ok)
    assert list(queue.bucket_counts) == _expected_buckets([r.queue for r in ok], sc.BUCKETS_PHASE)
    hist(sc.M_PREFILL, n_ok)
    hist(sc.M_DECODE, n_ok)  # output_tokens > 1 for all
    (tpot,) = hist(sc.M_TPOT, n_ok)
    assert list(tpot.bucket_counts) == _expected_buckets([r.tpot for r in ok], sc.BUCKETS_TPOT)
    # Durations: every record, errors in their own series with error.type.
    duration = hist(sc.M_REQUEST_DURATION, n_all)
    by_error = {p.attributes.get(sc.ERROR_TYPE): p.count for p in duration}
    assert by_error == {None: n_ok, "EngineDeadError": len(failed)}
    # Tokens: one input and one output point per successful request, in their own histograms
    # (the current GenAI shape, no gen_ai.token.type); the legacy histogram is off by default.
    (tokens_in,) = hist(sc.M_REQUEST_INPUT_TOKENS, n_ok)
    (tokens_out,) = hist(sc.M_REQUEST_OUTPUT_TOKENS, n_ok)
    assert tokens_in.sum == sum(r.prompt_tokens for r in ok)
    assert tokens_out.sum == sum(r.output_tokens for r in ok)
    assert sc.GEN_AI_TOKEN_TYPE not in tokens_in.attributes
    assert sc.M_TOKEN_USAGE.name not in metrics
    # The request counter.
    requests = _points(metrics[sc.M_REQUESTS.name])
    assert sum(p.value for p in requests) == n_all
    assert {
        (p.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS], p.attributes.get(sc.ERROR_TYPE))
        for p in requests
    } == {("stop", None), ("error", "EngineDeadError")}
    for p in requests:
        assert p.attributes[sc.GEN_AI_REQUEST_MODEL] == MODEL
        assert p.attributes[sc.GEN_AI_OPERATION_NAME] == "text_completion"


def _step(i: int, **over: Any) -> dict[str, Any]:
    step = {
        sc.STEP_TIME_UNIX_NANO: 1_800_000_000_000_000_000 + i,
        sc.STEP_ENGINE_ID: "engine-test",
        sc.STEP_INDEX: i,
        sc.STEP_RUNNING: 3 + i,
        sc.STEP_WAITING: 10 - i,
        sc.STEP_KV_USAGE: 0.1 * (i + 1),
        sc.STEP_PREFIX_QUERIES: 100,
        sc.STEP_PREFIX_HITS: 25 * i,
        sc.STEP_PROMPT_TOKENS: 64,
        sc.STEP_CACHED_PROMPT_TOKENS: 16,
        sc.STEP_GENERATION_TOKENS: 3,
        sc.STEP_PREEMPTIONS: i % 2,
        sc.STEP_FINISHED: 1,
    }
    step.update(over)
    return step


def test_step_records_land_in_the_store_and_update_instruments(setup: Setup) -> None:
    steps = [_step(i) for i in range(4)]
    for s in steps:
        setup.telemetry.submit_step(s)
    assert setup.telemetry.flush()
    stored = [obj for f in files_of(setup.run_dir, "steps") for _, obj in iter_jsonl(f)]
    assert stored == steps
    metrics = setup.metrics()
    engine = {sc.SAGELLM_ENGINE_ID: "engine-test"}

    def value(spec: sc.MetricSpec) -> Any:
        (point,) = _points(metrics[spec.name])
        assert dict(point.attributes) == engine
        return point.value

    assert value(sc.M_KV_USAGE) == pytest.approx(0.4)
    assert value(sc.M_RUNNING) == 6
    assert value(sc.M_WAITING) == 7
    assert value(sc.M_PREFIX_QUERIES) == 400
    assert value(sc.M_PREFIX_HITS) == 25 * (0 + 1 + 2 + 3)
    assert value(sc.M_PROMPT_TOKENS) == 256
    assert value(sc.M_GENERATION_TOKENS) == 12
    assert value(sc.M_PREEMPTIONS) == 2
    assert setup.telemetry.stats()["steps_recorded"] == 4

    # Counters accumulate across drains; gauges take the newest value.
    setup.telemetry.submit_step(_step(9, **{sc.STEP_KV_USAGE: 0.05}))
    assert setup.telemetry.flush()
    metrics = setup.metrics()
    assert value(sc.M_PREFIX_QUERIES) == 500
    assert value(sc.M_KV_USAGE) == pytest.approx(0.05)


def test_a_malformed_step_is_counted_not_raised(setup: Setup) -> None:
    bad = _step(0)
    del bad[sc.STEP_KV_USAGE]
    setup.telemetry.submit_step(bad)
    assert setup.telemetry.flush()
    assert setup.telemetry.stats()["record_failures"] == 1
    setup.telemetry.submit_step(_step(1))
    assert setup.telemetry.flush()
    assert setup.telemetry.stats()["steps_recorded"] == 1
    stored = [obj for f in files_of(setup.run_dir, "steps") for _, obj in iter_jsonl(f)]
    assert stored == [_step(1)]
