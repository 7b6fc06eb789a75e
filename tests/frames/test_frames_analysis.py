"""Analysis helpers on hand-made frames with known answers (and on the real run's metrics)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from frames_otlp import T0, WrittenRun, histogram_metric, metrics_line, sum_metric, write_lines

from sagellm_obs import semconv as sc
from sagellm_obs.frames import (
    Frames,
    compare,
    counter_delta,
    goodput,
    histogram_delta,
    histogram_quantile,
    load_metrics,
    percentiles,
    prefix_hit_rate,
    rolling_hit_rate,
    throughput,
)
from sagellm_obs.frames.schemas import REQUESTS, STEPS, conform, empty

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
S = 10**9


def _requests(**cols: list[object]) -> pl.DataFrame:
    return conform(pl.DataFrame(cols, strict=False), REQUESTS)


def test_percentiles_known_answers() -> None:
    req = _requests(
        ttft_s=[1.0, 2.0, 3.0, 4.0, 5.0, None],
        e2e_s=[10.0, 10.0, 10.0, 10.0, 10.0, 10.0],
        model=["a", "a", "b", "b", "b", "b"],
    )
    p = percentiles(req, cols=("ttft_s", "e2e_s", "queue_s"), qs=(0.5, 0.9, 0.99))
    assert p.columns == ["metric", "count", "mean", "p50", "p90", "p99"]
    rows = {r["metric"]: r for r in p.iter_rows(named=True)}
    assert p["metric"].to_list() == ["ttft_s", "e2e_s", "queue_s"]
    assert rows["ttft_s"]["count"] == 5
    assert rows["ttft_s"]["mean"] == 3.0
    assert rows["ttft_s"]["p50"] == 3.0
    assert rows["ttft_s"]["p90"] == pytest.approx(4.6)  # numpy's linear interpolation
    assert rows["ttft_s"]["p99"] == pytest.approx(4.96)
    assert rows["e2e_s"]["p99"] == 10.0
    assert rows["queue_s"]["count"] == 0 and rows["queue_s"]["p50"] is None
    by = percentiles(req, cols=("ttft_s",), qs=(0.5,), by="model")
    assert by.rows() == [("a", "ttft_s", 2, 1.5, 1.5), ("b", "ttft_s", 3, 4.0, 4.0)]


def test_percentile_labels_and_bad_input() -> None:
    req = _requests(ttft_s=[1.0])
    assert percentiles(req, cols=("ttft_s",), qs=(0.999,)).columns[-1] == "p99.9"
    with pytest.raises(ValueError, match="quantile"):
        percentiles(req, qs=(1.5,))
    with pytest.raises(ValueError, match="nope"):
        percentiles(req, cols=("nope",))


def test_goodput() -> None:
    req = _requests(
        ttft_s=[0.1, 0.6, 0.2, None, 0.1],
        tpot_s=[0.01, 0.01, 0.06, 0.01, 0.01],
        error_type=[None, None, None, None, "timeout"],
    )
    slo = {"ttft_s": 0.5, "tpot_s": 0.05}
    assert goodput(req, slo) == pytest.approx(1 / 5)
    assert goodput(req, {"ttft_s": 0.5}) == pytest.approx(2 / 5)
    assert goodput(req, {"ttft_s": 0.1}) == pytest.approx(1 / 5)  # the limit itself is met
    assert math.isnan(goodput(req.clear(), slo))
    with pytest.raises(ValueError, match="SLO"):
        goodput(req, {})
    # a cancelled request is never good: the client did not get its output
    cancelled = req.with_columns(cancelled=pl.Series([True, False, False, False, False]))
    assert goodput(cancelled, {"ttft_s": 0.5}) == pytest.approx(1 / 5)


def _steps(queries: list[int], hits: list[int]) -> pl.DataFrame:
    n = len(queries)
    return conform(
        pl.DataFrame(
            {
                "time": [START + timedelta(seconds=i) for i in range(n)],
                "engine_id": ["e"] * n,
                "prefix_queries": queries,
                "prefix_hits": hits,
            }
        ),
        STEPS,
    )


def test_prefix_hit_rate_in_windows() -> None:
    steps = _steps([100, 0, 50, 50], [50, 0, 50, 0])
    assert prefix_hit_rate(steps) == 100 / 200
    t1, t3 = START + timedelta(seconds=1), START + timedelta(seconds=3)
    assert prefix_hit_rate(steps, t1, t3) == 1.0  # [t1, t3): steps 1 and 2
    assert prefix_hit_rate(steps, start=t3) == 0.0
    assert prefix_hit_rate(steps, t1.timestamp(), t3.timestamp()) == 1.0  # epoch seconds too
    assert prefix_hit_rate(steps, t1.replace(tzinfo=None), t3.replace(tzinfo=None)) == 1.0
    assert prefix_hit_rate(steps, t1, t1 + timedelta(milliseconds=1)) is None  # no queries


def test_rolling_hit_rate() -> None:
    steps = _steps([100, 0, 50, 50, 0], [50, 0, 50, 0, 0])
    out = rolling_hit_rate(steps, every="2s")
    assert out["queries"].to_list() == [100, 100, 0]
    assert out["hits"].to_list() == [50, 50, 0]
    assert out["hit_rate"].to_list() == [0.5, 0.5, None]
    assert out["time"].to_list()[1] == START + timedelta(seconds=2)
    by = rolling_hit_rate(steps, every="10s", by="engine_id")
    assert by.select("engine_id", "hit_rate").rows() == [("e", 0.5)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.0, 0.0),
        (0.1, 0.05),  # rank 1 in the first bucket (0, 0.1]: 0 + 0.1 * 1/2
        (0.5, 0.4),  # rank 5: second bucket (0.1, 0.5], 3rd of its 4: 0.1 + 0.4 * 3/4
        (0.9, 1.0),  # rank 9: end of the third bucket (0.5, 1.0]
        (0.95, 1.0),  # rank 9.5 is in +Inf: the highest finite bound
        (1.0, 1.0),
    ],
)
def test_histogram_quantile_by_hand(q: float, expected: float) -> None:
    assert histogram_quantile([0.1, 0.5, 1.0], [2, 4, 3, 1], q) == pytest.approx(expected)


def test_histogram_quantile_edges() -> None:
    assert histogram_quantile([-1.0, 0.0, 1.0], [1, 1, 1, 0], 0.2) == -1.0  # bound <= 0
    assert math.isnan(histogram_quantile([1.0], [0, 0], 0.5))
    assert histogram_quantile([1.0], [1, 0], 2) == math.inf
    assert histogram_quantile([1.0], [1, 0], -1) == -math.inf
    with pytest.raises(ValueError, match="counts"):
        histogram_quantile([1.0, 2.0], [1, 2], 0.5)


def _metric_lines(tmp_path: Path) -> pl.DataFrame:
    restart = T0 + int(2.5 * S)
    lines = [
        metrics_line(
            [
                sum_metric("reqs", [(T0 + i * S, a)], attributes={"model": "a"}),
                sum_metric(
                    "reqs",
                    [(T0 + i * S, b)],
                    attributes={"model": "b"},
                    start_ns=restart if i == 3 else T0,
                ),
                histogram_metric("lat", [(T0 + i * S, h, sum(h) * 0.1)], [0.1, 1.0]),
            ]
        )
        for i, a, b, h in (
            (1, 10, 3, [1, 0, 0]),
            (2, 25, 4, [1, 2, 1]),
            (3, 40, 1, [3, 2, 1]),
        )
    ]
    write_lines(tmp_path / "metrics-00001.jsonl", lines)
    return load_metrics(tmp_path, cache=False)


def test_counter_delta_between_metric_lines(tmp_path: Path) -> None:
    m = _metric_lines(tmp_path)
    t1, t2, t3 = (datetime.fromtimestamp((T0 + i * S) / 1e9, tz=timezone.utc) for i in (1, 2, 3))
    assert counter_delta(m, "reqs", t1, t2) == (25 - 10) + (4 - 3)
    assert counter_delta(m, "reqs", t1, t3) == 30 + (1 + 1)  # b restarted: its new value counts
    assert counter_delta(m, "reqs") == 40 + 5  # from zero: both began with the run
    assert counter_delta(m, "reqs", end=t1) == 13
    assert counter_delta(m, "reqs", t1, t2, where={"model": "a"}) == 15
    assert counter_delta(m, "reqs", t3, None) == 0
    assert counter_delta(m, "no.such.metric") == 0
    with pytest.raises(ValueError, match="histogram"):
        counter_delta(m, "lat")


def test_histogram_delta_between_metric_lines(tmp_path: Path) -> None:
    m = _metric_lines(tmp_path)
    t1, t2 = (datetime.fromtimestamp((T0 + i * S) / 1e9, tz=timezone.utc) for i in (1, 2))
    d = histogram_delta(m, "lat", t1, t2)
    assert d.bounds == (0.1, 1.0)
    assert d.counts == (0, 2, 1)
    assert d.count == 3
    assert d.sum == pytest.approx(0.3)
    assert d.mean == pytest.approx(0.1)
    assert d.quantile(0.5) == pytest.approx(0.1 + 0.9 * 1.5 / 2)
    total = histogram_delta(m, "lat")
    assert total.counts == (3, 2, 1) and total.count == 6
    assert histogram_delta(m, "missing").count == 0
    with pytest.raises(ValueError, match="counter"):
        histogram_delta(m, "reqs")


def test_deltas_of_the_real_run(frames: Frames, written: WrittenRun) -> None:
    """Three requests, a flush, two more, a flush, shutdown: the counters say so (the records
    are synthetic; tests/server/test_server_counter_deltas.py checks deltas of a real engine
    against vLLM's own counters)."""
    m = frames.metrics
    times = m["time"].unique().sort().to_list()
    assert len(times) >= 2
    assert counter_delta(m, "sagellm.requests") == 5
    assert counter_delta(m, "sagellm.requests", times[0], times[1]) == 2
    assert counter_delta(m, "sagellm.requests", end=times[0]) == 3
    assert counter_delta(m, "sagellm.requests", where={"error.type": "timeout"}) == 1
    duration = histogram_delta(m, "gen_ai.server.request.duration", times[0], times[1])
    assert duration.count == 2
    assert sum(duration.counts) == 2
    # against what was submitted (6 steps of 100 queries), not what the frames read back
    submitted = sum(step[sc.STEP_PREFIX_QUERIES] for step in written.steps)
    assert submitted == 600
    assert counter_delta(m, "sagellm.prefix_cache.queries") == submitted


def test_compare_side_by_side() -> None:
    a = _requests(ttft_s=[1.0, 2.0, 3.0], e2e_s=[1.0, 1.0, 1.0])
    b = _requests(ttft_s=[2.0, 4.0, 6.0], e2e_s=[0.0, 0.0, 0.0])
    out = compare(a, b, cols=("ttft_s", "e2e_s"), qs=(0.5,), names=("base", "new"))
    assert out.columns == ["metric", "stat", "base", "new", "delta", "ratio"]
    rows = {(r["metric"], r["stat"]): r for r in out.iter_rows(named=True)}
    assert rows[("ttft_s", "p50")]["base"] == 2.0
    assert rows[("ttft_s", "p50")]["new"] == 4.0
    assert rows[("ttft_s", "p50")]["delta"] == 2.0
    assert rows[("ttft_s", "p50")]["ratio"] == 2.0
    assert rows[("ttft_s", "count")]["delta"] == 0.0
    assert rows[("e2e_s", "mean")]["ratio"] == 0.0
    assert rows[("e2e_s", "mean")]["delta"] == -1.0


def test_compare_accepts_frames(frames: Frames) -> None:
    out = compare(frames, frames)
    assert out.filter(pl.col("stat") == "p50")["delta"].to_list() == [0.0] * 4


def test_throughput() -> None:
    req = _requests(
        arrival=[START, START + timedelta(seconds=1), START + timedelta(seconds=2)],
        e2e_s=[1.0, 1.0, 1.0],
        output_tokens=[10, 20, 30],
        input_tokens=[1, 1, 1],
    )
    t = throughput(req)
    assert t["requests"] == 3
    assert t["duration_s"] == pytest.approx(3.0)
    assert t["requests_per_s"] == pytest.approx(1.0)
    assert t["output_tokens_per_s"] == pytest.approx(20.0)
    assert t["input_tokens_per_s"] == pytest.approx(1.0)
    empty = throughput(req.clear())
    assert empty["requests"] == 0 and math.isnan(empty["requests_per_s"])


def test_every_helper_gives_the_same_answer_on_lazy_frames(frames: Frames) -> None:
    """Eager and lazy input (as ``frames.scan`` gives) agree on the real run."""
    req, steps, m = frames.requests, frames.steps, frames.metrics
    lreq, lsteps, lm = req.lazy(), steps.lazy(), m.lazy()
    assert percentiles(lreq).equals(percentiles(req))
    assert percentiles(lreq, by="model").equals(percentiles(req, by="model"))
    slo = {"ttft_s": 10.0}
    assert goodput(lreq, slo) == goodput(req, slo)
    assert goodput(req, slo) == pytest.approx(3 / 5)  # the timeout and the cancelled one fail
    assert prefix_hit_rate(lsteps) == prefix_hit_rate(steps)
    assert rolling_hit_rate(lsteps, "100ms").equals(rolling_hit_rate(steps, "100ms"))
    assert throughput(lreq) == throughput(req)
    assert compare(lreq, req).equals(compare(req, req))
    times = m["time"].unique().sort().to_list()
    for args in ((), (times[0], times[1]), (None, times[0])):
        assert counter_delta(lm, "sagellm.requests", *args) == counter_delta(
            m, "sagellm.requests", *args
        )
        name = "gen_ai.server.request.duration"
        assert histogram_delta(lm, name, *args) == histogram_delta(m, name, *args)
    with pytest.raises(ValueError, match="nope"):
        goodput(lreq, {"nope": 1.0})


def test_lazy_empty_frames() -> None:
    empty_req = empty(REQUESTS).lazy()
    assert math.isnan(goodput(empty_req, {"ttft_s": 1.0}))
    assert throughput(empty_req)["requests"] == 0
    assert percentiles(empty_req)["count"].to_list() == [0] * 4
