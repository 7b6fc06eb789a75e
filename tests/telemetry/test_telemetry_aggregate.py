"""Pre-aggregated request metrics against the SDK's instruments, point by point.

The same records go through two telemetries with the same deterministic ids: one aggregates in
the telemetry thread (the default), the other records through the SDK's instruments
(``sdk_request_metrics=True``). Each has a cumulative and a delta reader, collected in rounds; the
points each reader gets must not differ (times aside), exemplars included.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Counter, Histogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricsData,
    Sum,
)

from sagellm_obs import semconv as sc
from sagellm_obs.protocol.timing import ClockAnchor
from sagellm_obs.telemetry import RequestRecord, Telemetry
from sagellm_obs.telemetry.aggregate import CARDINALITY_LIMIT, RequestMetrics
from sagellm_obs.testing import deterministic_telemetry as compare_telemetry

MakeRecord = Callable[..., RequestRecord]
_DELTA = {Histogram: AggregationTemporality.DELTA, Counter: AggregationTemporality.DELTA}
REQUEST_METRICS = {
    sc.M_REQUEST_DURATION.name,
    sc.M_TTFT.name,
    sc.M_TPOT.name,
    sc.M_QUEUE.name,
    sc.M_PREFILL.name,
    sc.M_DECODE.name,
    sc.M_TOKEN_USAGE.name,
    sc.M_REQUEST_INPUT_TOKENS.name,
    sc.M_REQUEST_OUTPUT_TOKENS.name,
    sc.M_REQUESTS.name,
}


@dataclass
class Side:
    telemetry: Telemetry
    cumulative: InMemoryMetricReader
    delta: InMemoryMetricReader

    def submit(self, records: list[RequestRecord]) -> None:
        for r in records:
            self.telemetry.submit_request(r)
        # The pipeline only: Telemetry.flush would collect the in-memory readers too.
        assert self.telemetry.pipeline.flush(timeout=10)

    def collect(self) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        return _points(self.cumulative.get_metrics_data()), _points(self.delta.get_metrics_data())


def _side(root: Path, name: str, *, sdk: bool, limits: dict[type, int] | None = None) -> Side:
    cumulative = InMemoryMetricReader(cardinality_limits=limits)
    delta = InMemoryMetricReader(preferred_temporality=_DELTA)  # type: ignore[arg-type]
    tel = compare_telemetry(
        root / name, metric_readers=[cumulative, delta], sdk_request_metrics=sdk
    )
    return Side(tel, cumulative, delta)


@pytest.fixture(autouse=True)
def _both_genai_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """The current and the legacy GenAI names, so both token histograms are compared."""
    monkeypatch.setenv(sc.ENV_SEMCONV_OPT_IN, "http,gen_ai_latest_experimental/dup")


@pytest.fixture
def sides(tmp_path: Path) -> Iterator[tuple[Side, Side]]:
    ours = _side(tmp_path, "ours", sdk=False)
    sdk = _side(tmp_path, "sdk", sdk=True)
    sdk.telemetry.pipeline.spans.anchor = ours.telemetry.anchor
    assert ours.telemetry.pipeline._aggregated is not None
    assert sdk.telemetry.pipeline._aggregated is None
    yield ours, sdk
    ours.telemetry.shutdown()
    sdk.telemetry.shutdown()


def _points(data: MetricsData | None) -> dict[str, list[Any]]:
    """metric name -> its points (and kind, unit, temporality), times left out, sorted."""
    out: dict[str, list[Any]] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert sm.scope.name == sc.SCOPE_NAME
            for m in sm.metrics:
                assert m.name not in out, f"{m.name} twice"
                points = []
                for p in m.data.data_points:
                    d = _plain(p)
                    for key in ("start_time_unix_nano", "time_unix_nano"):
                        d.pop(key)
                    for ex in d.get("exemplars", []):
                        ex.pop("time_unix_nano")
                        if isinstance(m.data, Sum):
                            # A sum's exemplar is a uniformly random measurement (the SDK's
                            # SimpleFixedSizeExemplarReservoir): which one is not comparable.
                            ex["span_id"] = ex["span_id"] and "some span"
                            ex["trace_id"] = ex["trace_id"] and "some trace"
                            ex["filtered_attributes"] = sorted(ex["filtered_attributes"])
                    points.append(d)
                meta = {
                    "kind": type(m.data).__name__,
                    "unit": m.unit,
                    "description": m.description,
                    "temporality": getattr(m.data, "aggregation_temporality", None),
                    "monotonic": getattr(m.data, "is_monotonic", None),
                }
                # A stream's attribute sets are unique, so they alone give the order.
                points.sort(key=lambda d: json.dumps(d["attributes"], sort_keys=True))
                out[m.name] = [meta, *points]
    return out


def _plain(value: Any) -> Any:
    """What ``json.loads(point.to_json())`` gives (dataclasses and mappings as dicts, sequences
    as lists), built directly: the JSON round trip was most of this file's time."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _batch(make: MakeRecord, anchor: ClockAnchor, start: int) -> list[RequestRecord]:
    """Varied records: two models, errors, aborts, one-token outputs, an unsampled parent."""
    i = start
    out = [
        make(anchor, i, model="m-a", queue=0.004, prefill=0.03, decode=0.4),
        make(anchor, i + 1, model="m-b", operation=sc.OP_CHAT, finish_reason="length"),
        make(anchor, i + 2, model="m-a", output_tokens=1, decode=0.0),
        make(anchor, i + 3, error_type="EngineDead", error_code="INTERNAL", finish_reason="error"),
        make(anchor, i + 4, error_type="Cancelled", scheduled_ts=0.0, first_token_ts=0.0),
        make(  # an unsampled remote parent: no exemplar under trace_based
            anchor,
            i + 5,
            otel_trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
            parent_span_id=0x00F067AA0BA902B7,
            parent_sampled=False,
        ),
        make(anchor, i + 6, model="m-a", prefill=2.5, decode=30.0, output_tokens=4000),
    ]
    return out


def _rounds(
    ours: Side, sdk: Side, batches: list[list[RequestRecord]]
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Submit each batch to both sides and compare what their readers collect; the last round."""
    got_cumulative: dict[str, list[Any]] = {}
    got_delta: dict[str, list[Any]] = {}
    for n, batch in enumerate(batches):
        ours.submit(batch)
        sdk.submit(batch)
        got_cumulative, got_delta = ours.collect()
        want_cumulative, want_delta = sdk.collect()
        assert set(want_cumulative) >= REQUEST_METRICS, n
        assert got_cumulative == want_cumulative, f"cumulative, round {n}"
        assert got_delta == want_delta, f"delta, round {n}"
    return got_cumulative, got_delta


@pytest.mark.parametrize("exemplar_filter", ["trace_based", "always_on", "always_off"])
def test_aggregated_points_match_the_sdk_instruments(
    tmp_path: Path,
    records: MakeRecord,
    monkeypatch: pytest.MonkeyPatch,
    exemplar_filter: str,
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", exemplar_filter)
    ours, sdk = _side(tmp_path, "ours", sdk=False), _side(tmp_path, "sdk", sdk=True)
    try:
        anchor = ours.telemetry.anchor
        sdk.telemetry.pipeline.spans.anchor = anchor
        # Round 2 adds nothing (delta readers get no request points), round 3 a third model.
        first = _batch(records, anchor, 0)
        third = [*_batch(records, anchor, 20), records(anchor, 40, model="m-c")]
        cumulative, delta = _rounds(ours, sdk, [first, [], third])
        requests = cumulative[sc.M_REQUESTS.name]
        assert sum(p["value"] for p in requests[1:]) == 15
        assert sum(p["value"] for p in delta[sc.M_REQUESTS.name][1:]) == 8
        exemplars = [e for p in requests[1:] for e in p["exemplars"]]
        if exemplar_filter == "always_off":
            assert not exemplars
        else:
            assert exemplars and all(e["trace_id"] and e["span_id"] for e in exemplars)
            ttft = [e for p in cumulative[sc.M_TTFT.name][1:] for e in p["exemplars"]]
            assert ttft and all(isinstance(e["span_id"], int) for e in ttft)
        # Nothing new since the last round: no delta points, no exemplars.
        again_cumulative, again_delta = ours.collect()
        assert sc.M_REQUESTS.name not in again_delta
        assert not [e for p in again_cumulative[sc.M_TTFT.name][1:] for e in p["exemplars"]]
    finally:
        ours.telemetry.shutdown()
        sdk.telemetry.shutdown()


def test_delta_points_carry_the_intervals_min_max_and_sum(
    sides: tuple[Side, Side], records: MakeRecord
) -> None:
    ours, sdk = sides
    anchor = ours.telemetry.anchor
    slow = [records(anchor, 0, decode=9.0), records(anchor, 1, decode=7.0)]
    fast = [records(anchor, 2, decode=0.01)]
    _rounds(ours, sdk, [slow, fast])
    # In the second interval only the fast request: its own min, max and sum.
    ours.submit([records(anchor, 3, decode=0.02)])
    _, delta = ours.collect()
    (meta, point) = delta[sc.M_DECODE.name]
    assert meta["temporality"] == AggregationTemporality.DELTA
    assert point["count"] == 1
    assert point["min"] == point["max"] == pytest.approx(0.02)
    assert point["sum"] == pytest.approx(0.02)


def test_past_the_cardinality_limit_points_overflow_as_in_the_sdk(
    sides: tuple[Side, Side], records: MakeRecord
) -> None:
    ours, sdk = sides
    anchor = ours.telemetry.anchor
    many = [records(anchor, i % 50, model=f"model-{i}") for i in range(CARDINALITY_LIMIT + 5)]
    _rounds(ours, sdk, [many])
    cumulative, _ = ours.collect()
    ttft = cumulative[sc.M_TTFT.name][1:]
    assert len(ttft) == CARDINALITY_LIMIT + 1
    overflow = [p for p in ttft if p["attributes"] == {"otel.metric.overflow": True}]
    assert len(overflow) == 1 and overflow[0]["count"] == 5


def _step() -> dict[str, Any]:
    return {
        sc.STEP_ENGINE_ID: "engine-test",
        sc.STEP_KV_USAGE: 0.5,
        sc.STEP_RUNNING: 1,
        sc.STEP_WAITING: 0,
        sc.STEP_PREFIX_QUERIES: 10,
        sc.STEP_PREFIX_HITS: 4,
        sc.STEP_PROMPT_TOKENS: 10,
        sc.STEP_GENERATION_TOKENS: 3,
        sc.STEP_PREEMPTIONS: 0,
    }


def test_one_collection_has_one_time(sides: tuple[Side, Side], records: MakeRecord) -> None:
    """Our points carry the SDK's collection time, so deltas between collections line up."""
    ours, _ = sides
    ours.telemetry.submit_step(_step())
    ours.submit([records(ours.telemetry.anchor, 0)])
    data = ours.cumulative.get_metrics_data()
    assert data is not None
    points = {
        m.name: {p.time_unix_nano for p in m.data.data_points}
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert sc.M_KV_USAGE.name in points and sc.M_TTFT.name in points
    assert len(set().union(*points.values())) == 1, points


def test_a_failing_collection_leaves_the_sdks_points_and_logs(
    sides: tuple[Side, Side],
    records: MakeRecord,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ours, _ = sides
    anchor = ours.telemetry.anchor
    ours.telemetry.submit_step(_step())
    ours.submit([records(anchor, 0)])

    def broken(self: RequestMetrics, state: Any) -> list[Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(RequestMetrics, "metrics", broken)
    with caplog.at_level(logging.ERROR):
        cumulative, _ = ours.collect()
    assert sc.M_KV_USAGE.name in cumulative  # the SDK's own points still arrive
    assert sc.M_TTFT.name not in cumulative
    assert "collecting the request metrics failed" in caplog.text


def test_readers_without_the_sdk_hook_fall_back_to_the_instruments() -> None:
    class Odd:
        """A reader from another SDK version: no collect callback to wrap."""

    from opentelemetry.sdk.resources import Resource

    assert RequestMetrics(Resource.create({})).attach([Odd()]) is False  # type: ignore[list-item]


def test_a_reader_with_its_own_cardinality_limits_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="sagellm_obs.telemetry.setup"):
        side = _side(tmp_path, "limits", sdk=False, limits={Histogram: 10})
    try:
        assert side.telemetry.pipeline._aggregated is None
        assert "request metrics go through the SDK's instruments" in caplog.text
    finally:
        side.telemetry.shutdown()


def test_the_sdk_disabled_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    side = _side(tmp_path, "off", sdk=False)
    try:
        assert side.telemetry.pipeline._aggregated is None
    finally:
        side.telemetry.shutdown()
