"""Fixtures for the ClickHouse tests: one chdb session per test process, a database per module.

chdb binds one database folder per process, so every module shares the session's folder and
works in a database of its own.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pytest

from tests.conftest import need
from tests.frames.frames_otlp import WrittenRun, write_run

if TYPE_CHECKING:
    from sagellm_obs.clickhouse.connect import ChdbConnection
    from sagellm_obs.clickhouse.ddl import Tables
    from sagellm_obs.clickhouse.source import ClickHouseSource

# The frames tests' run: two flushes, an error, a cancelled request, a second model.
BATCHES = (
    (
        {"i": 0},
        {"i": 1, "queue": 0.05, "prefill": 0.2, "decode": 0.9, "output_tokens": 31},
        {"i": 2, "error_type": "timeout", "finish_reason": "error", "error_code": "TIMEOUT"},
    ),
    (
        {"i": 3, "cancelled": True, "finish_reason": "abort", "output_tokens": 1},
        {"i": 4, "model": "other-model", "operation": "chat", "cached_tokens": 0},
    ),
)


def need_clickhouse() -> None:
    """Skip (fail in CI) unless the [clickhouse] extra is installed."""
    for module in ("chdb", "clickhouse_connect"):
        need(
            importlib.util.find_spec(module) is not None,
            module,
            "pip install -e '.[clickhouse]' (make test installs it)",
        )


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The process's chdb folder (the session is opened by the first ``chdb`` fixture)."""
    need_clickhouse()
    path = str(tmp_path_factory.mktemp("chdb") / "db")
    yield path
    from sagellm_obs.clickhouse.connect import close_chdb

    close_chdb()


@pytest.fixture
def chdb(chdb_path: str) -> ChdbConnection:
    """The shared chdb connection (reopened if a test switched paths)."""
    from sagellm_obs.clickhouse.connect import open_chdb

    return open_chdb(chdb_path)


@pytest.fixture
def database(chdb: ChdbConnection, request: pytest.FixtureRequest) -> str:
    """A fresh database named after the test."""
    name = "t_" + re.sub(r"\W+", "_", request.node.name)[:60]
    chdb.command(f"DROP DATABASE IF EXISTS {name}")
    chdb.command(f"CREATE DATABASE {name}")
    return name


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> WrittenRun:
    """A run folder written by ``configure()`` + the pipeline."""
    return write_run(tmp_path_factory.mktemp("clickhouse") / "run", BATCHES)


RECORDED = Path(__file__).parents[1] / "frames" / "data"
"""Spans vLLM emitted (tests/frames/record_vllm_spans.py): ``vllm_and_ours.jsonl`` (our request
spans with vLLM's ``llm_request`` children) and ``vllm_alone.jsonl`` (vLLM's alone)."""


def recorded_copy(name: str, folder: Path) -> Path:
    """A copy of a recorded file in ``folder`` (``frames.load`` caches next to the file)."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(RECORDED / name, folder / name))


def insert_otlp_spans(conn: ChdbConnection, tables: Tables, path: Path) -> int:
    """Insert an OTLP/JSON lines file's spans as the exporter shapes them; the rows inserted."""
    from sagellm_obs.clickhouse.rows import span_rows
    from sagellm_obs.clickhouse.write import ARROW_SCHEMAS

    rows = [row for line in path.read_text().splitlines() for row in span_rows(json.loads(line))]
    data = pa.Table.from_pylist(rows, schema=ARROW_SCHEMAS["traces"])
    conn.insert_arrow(tables.database, tables.traces, data)
    return len(rows)


N = 600
"""Request spans of the ``many`` fixture."""


def recorded_vllm_attributes() -> list[tuple[str, str]]:
    """The attributes of an ``llm_request`` span vLLM emitted (tests/frames/record_vllm_spans.py),
    as the exporter's map holds them."""
    from sagellm_obs import semconv as sc
    from sagellm_obs.clickhouse.rows import span_rows

    for text in (RECORDED / "vllm_alone.jsonl").read_text().splitlines():
        for row in span_rows(json.loads(text)):
            if row["SpanName"] == sc.VLLM_REQUEST_SPAN_NAME:
                return list(row["SpanAttributes"])
    raise AssertionError("no llm_request span recorded: rerun tests/frames/record_vllm_spans.py")


@pytest.fixture
def many(chdb: ChdbConnection, database: str) -> ClickHouseSource:
    """N request spans over ~10 minutes generated inside ClickHouse: half vLLM's (the attributes
    of a span vLLM emitted, its id, prompt tokens and TTFT varied; vLLM names no model), half
    ours."""
    from sagellm_obs import frames
    from sagellm_obs import semconv as sc
    from sagellm_obs.clickhouse.ddl import Tables, create_tables
    from sagellm_obs.clickhouse.source import quote_string
    from tests.frames.frames_otlp import T0

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
