"""The summaries ClickHouse computes equal the same summaries computed in Polars."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sagellm_obs import frames
from sagellm_obs.clickhouse.connect import ChdbConnection
from sagellm_obs.clickhouse.queries import (
    parse_every,
    prefix_hit_rate_per_model,
    ttft_quantiles_per_window,
)
from sagellm_obs.clickhouse.write import export_clickhouse
from tests.clickhouse.conftest import N
from tests.frames.frames_otlp import T0, WrittenRun


def polars_ttft(requests: pl.DataFrame, every: str, quantiles: Sequence[float]) -> pl.DataFrame:
    return (
        requests.filter(pl.col("ttft_s").is_not_null())
        .group_by(pl.col("arrival").dt.truncate(every).alias("window"))
        .agg(
            pl.len().cast(pl.Int64).alias("requests"),
            *(
                pl.col("ttft_s").quantile(q, "linear").alias(f"ttft_p{q * 100:g}")
                for q in quantiles
            ),
        )
        .sort("window")
    )


def polars_hit_rate(requests: pl.DataFrame) -> pl.DataFrame:
    return (
        requests.group_by(pl.col("model").cast(pl.String))  # the query gives text
        .agg(
            pl.len().cast(pl.Int64).alias("requests"),
            # null when no request of the model reports them (vLLM's spans carry no cached count)
            *(
                pl.when(pl.col(c).is_not_null().any()).then(pl.col(c).sum()).alias(c)
                for c in ("input_tokens", "cached_tokens")
            ),
        )
        .with_columns(
            pl.when(pl.col("input_tokens") > 0)
            .then(pl.col("cached_tokens") / pl.col("input_tokens"))
            .alias("prefix_hit_rate")
        )
        .sort("model", nulls_last=True)
    )


@pytest.mark.parametrize(
    ("every", "quantiles"), [("1m", (0.5, 0.99)), ("90s", (0.0, 0.25, 0.9, 1.0))]
)
def test_ttft_quantiles_equal_polars(
    many: frames.ClickHouseSource, every: str, quantiles: tuple[float, ...]
) -> None:
    requests = frames.load(many).requests
    assert requests.height > N // 2
    got = ttft_quantiles_per_window(many, every, quantiles)
    want = polars_ttft(requests, every, quantiles)
    assert got.height == want.height > 5
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)


def test_filters_apply_to_pushdown(many: frames.ClickHouseSource) -> None:
    from dataclasses import replace

    src = replace(many, model=("b",), since=T0 + 60 * 10**9, until=T0 + 400 * 10**9)
    requests = frames.load(src).requests
    assert set(requests["model"]) == {"b"}
    got = ttft_quantiles_per_window(src, "1m")
    assert_frame_equal(
        got, polars_ttft(requests, "1m", (0.5, 0.99)), check_exact=False, rel_tol=1e-12
    )
    assert_frame_equal(prefix_hit_rate_per_model(src), polars_hit_rate(requests))


def test_prefix_hit_rate_equals_polars(many: frames.ClickHouseSource) -> None:
    got = prefix_hit_rate_per_model(many)
    want = polars_hit_rate(frames.load(many).requests)
    assert got["model"].to_list() == ["a", "b", "c", None]  # vLLM's spans name no model
    assert_frame_equal(got, want)


def test_pushdown_on_an_exported_run(
    written: WrittenRun, chdb: ChdbConnection, database: str
) -> None:
    export_clickhouse(written.path, chdb, database=database)
    src = frames.clickhouse_source(chdb, database=database)
    local = frames.load(written.path, cache=False).requests
    assert_frame_equal(
        ttft_quantiles_per_window(src, "1s", (0.5, 0.99)),
        polars_ttft(local, "1s", (0.5, 0.99)),
        check_exact=False,
        rel_tol=1e-12,
    )
    assert_frame_equal(prefix_hit_rate_per_model(src), polars_hit_rate(local))


def test_window_lengths() -> None:
    assert parse_every("90s") == 90 * 10**9
    assert parse_every("1h") == 3600 * 10**9
    for bad in ("0s", "1w", "m", "1.5m"):
        with pytest.raises(ValueError, match="window"):
            parse_every(bad)
