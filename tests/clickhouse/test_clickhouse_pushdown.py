"""The summaries ClickHouse computes equal the same summaries computed in Polars."""

from __future__ import annotations

import json
from collections.abc import Sequence

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sagellm_obs import frames
from sagellm_obs import semconv as sc
from sagellm_obs.clickhouse.connect import ChdbConnection
from sagellm_obs.clickhouse.ddl import Tables, create_tables
from sagellm_obs.clickhouse.queries import (
    parse_every,
    prefix_hit_rate_per_model,
    ttft_quantiles_per_window,
)
from sagellm_obs.clickhouse.rows import span_rows
from sagellm_obs.clickhouse.source import quote_string
from sagellm_obs.clickhouse.write import export_clickhouse
from tests.clickhouse.conftest import RECORDED
from tests.frames.frames_otlp import T0, WrittenRun

N = 600


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
        requests.group_by("model")
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


def recorded_vllm_attributes() -> list[tuple[str, str]]:
    """The attributes of an ``llm_request`` span vLLM emitted (tests/frames/record_vllm_spans.py),
    as the exporter's map holds them."""
    for text in (RECORDED / "vllm_alone.jsonl").read_text().splitlines():
        for row in span_rows(json.loads(text)):
            if row["SpanName"] == sc.VLLM_REQUEST_SPAN_NAME:
                return list(row["SpanAttributes"])
    raise AssertionError("no llm_request span recorded: rerun tests/frames/record_vllm_spans.py")


@pytest.fixture
def many(chdb: ChdbConnection, database: str) -> frames.ClickHouseSource:
    """N request spans over ~10 minutes generated inside ClickHouse: half vLLM's (the attributes
    of a span vLLM emitted, its id, prompt tokens and TTFT varied; vLLM names no model), half
    ours."""
    tables = Tables(database=database)
    create_tables(chdb, tables)
    recorded = ", ".join(
        f"{quote_string(k)}, {quote_string(v)}" for k, v in recorded_vllm_attributes()
    )
    vllm = (
        f"mapUpdate(map({recorded}), map('{sc.GEN_AI_REQUEST_ID}', toString(number), "
        f"'{sc.GEN_AI_USAGE_PROMPT_TOKENS_DEPRECATED}', toString(inp), "
        f"'{sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN}', toString(ttft)))"
    )
    ours = (
        f"map('{sc.GEN_AI_OPERATION_NAME}', 'chat', '{sc.SAGELLM_REQUEST_ID}', toString(number), "
        f"'{sc.GEN_AI_REQUEST_MODEL}', model, '{sc.GEN_AI_USAGE_INPUT_TOKENS}', toString(inp), "
        f"'{sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS}', toString(cached), "
        f"'{sc.SAGELLM_TTFT}', toString(ttft))"
    )
    no_ttft = (
        f"map('{sc.GEN_AI_OPERATION_NAME}', 'chat', '{sc.SAGELLM_REQUEST_ID}', toString(number), "
        f"'{sc.GEN_AI_REQUEST_MODEL}', model)"
    )
    chdb.command(
        f"""INSERT INTO {tables.qualified("traces")} (Timestamp, TraceId, SpanId, SpanName,
            SpanKind, ServiceName, SpanAttributes, Duration, StatusCode)
        SELECT fromUnixTimestamp64Nano(toInt64({T0}) + number * 997000000),
            lower(leftPad(hex(number + 1), 32, '0')), lower(leftPad(hex(number + 1), 16, '0')),
            multiIf(number % 2 = 0, '{sc.VLLM_REQUEST_SPAN_NAME}', number % 13 = 1, 'decode',
                    'chat'),
            if(number % 13 = 1, 'Internal', 'Server'), 'svc',
            multiIf(number % 2 = 0, {vllm}, number % 11 = 1, {no_ttft}, {ours}),
            1000000, 'Unset'
        FROM (SELECT number, ['a', 'b', 'c'][number % 3 + 1] AS model,
                     (number * 7919 % 1000) / 1000 + 0.001 AS ttft,
                     toInt64(10 + number % 50) AS inp, toInt64(number % 9) AS cached
              FROM numbers({N}))"""
    )
    return frames.clickhouse_source(chdb, database=database)


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
