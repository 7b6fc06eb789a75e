"""Call trees and "where the time went" of joined traces: application -> client -> engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from frames_otlp import T0, span, traces_line, write_lines

from sagellm_obs import semconv as sc
from sagellm_obs.frames import (
    CALL_TREE,
    CATEGORIES,
    SPANS,
    TIME_BREAKDOWN,
    SchemaError,
    call_tree,
    load_spans,
    time_breakdown,
)
from sagellm_obs.frames.schemas import conform, empty

APP = "a" * 32
LONE = "b" * 32
MS = 1_000_000
INTERNAL, SERVER, CLIENT = 1, 2, 3


def sid(name: str) -> str:
    return name.encode().hex()[:16].ljust(16, "0")


def s(name: str, span_name: str, parent: str | None, kind: int, start_ms: float, ms: float,
      trace: str = APP, **attrs: Any) -> dict[str, Any]:  # fmt: skip
    return span(
        trace,
        sid(name),
        span_name,
        parent=sid(parent) if parent else None,
        kind=kind,
        start_ns=T0 + int(start_ms * MS),
        duration_ns=int(ms * MS),
        attributes=attrs,
    )


def engine_attrs(request_id: str, **extra: Any) -> dict[str, Any]:
    return {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_REQUEST_MODEL: "tiny",
        sc.SAGELLM_REQUEST_ID: request_id,
        sc.GEN_AI_USAGE_INPUT_TOKENS: 12,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 5,
        **extra,
    }


CHAT = {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_REQUEST_MODEL: "tiny"}
HTTP = {"http.request.method": "POST"}


def app_trace() -> list[dict[str, Any]]:
    """An application call with two model calls (the second streamed) and two parallel tools."""
    return [
        s("root", "Assistant.answer", None, INTERNAL, 0, 100,
          **{sc.CODE_FUNCTION_NAME: "app.Assistant.answer"}),
        s("cli1", "chat tiny", "root", CLIENT, 5, 40, **CHAT),
        s("http1", "POST /v1/chat/completions", "cli1", SERVER, 8, 34, **HTTP),
        s("eng1", "chat tiny", "http1", SERVER, 10, 30,
          **engine_attrs("req-1", **{sc.SAGELLM_QUEUE: 0.002, sc.SAGELLM_PREFILL: 0.008,
                                     sc.SAGELLM_DECODE: 0.018})),
        s("queue1", "queue", "eng1", INTERNAL, 11, 2),
        s("prefill1", "prefill", "eng1", INTERNAL, 13, 8),
        s("decode1", "decode", "eng1", INTERNAL, 21, 18),
        s("tool1", "execute_tool get_weather", "root", INTERNAL, 50, 5,
          **{sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL, sc.GEN_AI_TOOL_NAME: "get_weather"}),
        s("tool2", "execute_tool get_time", "root", INTERNAL, 52, 6,
          **{sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL, sc.GEN_AI_TOOL_NAME: "get_time"}),
        s("cli2", "chat tiny", "root", CLIENT, 60, 35, **CHAT, **{sc.GEN_AI_REQUEST_STREAM: True}),
        s("http2", "POST /v1/chat/completions", "cli2", SERVER, 62, 30, **HTTP),
        # No phase attributes on this engine span: the phase spans' durations are used.
        s("eng2", "chat tiny", "http2", SERVER, 65, 25, **engine_attrs("req-2")),
        s("decode2", "decode", "eng2", INTERNAL, 70, 15),
        s("queue2", "queue", "eng2", INTERNAL, 66, 1),
        s("prefill2", "prefill", "eng2", INTERNAL, 67, 3),
    ]  # fmt: skip


def lone_trace() -> list[dict[str, Any]]:
    """An engine request without a client span, and a span whose parent was not exported."""
    return [
        s("eng3", "text_completion tiny", None, SERVER, 200, 10, LONE, **engine_attrs("req-3")),
        s("queue3", "queue", "eng3", INTERNAL, 201, 1, LONE),
        s("orphan", "decode", "missing", INTERNAL, 205, 1, LONE),
    ]


@pytest.fixture(scope="module")
def spans(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    path = tmp_path_factory.mktemp("traces") / "traces.jsonl"
    write_lines(path, [traces_line(app_trace()), traces_line(lone_trace())])
    return load_spans(path, cache=False)


def test_call_tree_depth_first_with_categories(spans: pl.DataFrame) -> None:
    tree = call_tree(spans, APP)
    assert tree.schema == CALL_TREE
    rows = tree.select("name", "depth", "category", "position").rows()
    assert rows == [
        ("Assistant.answer", 0, "application", 0),
        ("chat tiny", 1, "model call", 1),
        ("POST /v1/chat/completions", 2, "server", 2),
        ("chat tiny", 3, "engine request", 3),
        ("queue", 4, "queue", 4),
        ("prefill", 4, "prefill", 5),
        ("decode", 4, "decode", 6),
        ("execute_tool get_weather", 1, "tool call", 7),
        ("execute_tool get_time", 1, "tool call", 8),
        ("chat tiny", 1, "model call", 9),
        ("POST /v1/chat/completions", 2, "server", 10),
        ("chat tiny", 3, "engine request", 11),
        ("queue", 4, "queue", 12),  # siblings by start time, not by export order
        ("prefill", 4, "prefill", 13),
        ("decode", 4, "decode", 14),
    ]
    assert set(tree["category"]) <= set(CATEGORIES)
    assert tree["parent_span_id"][0] is None
    assert tree["parent_span_id"][1] == sid("root")


def test_offsets_durations_and_self_time(spans: pl.DataFrame) -> None:
    tree = call_tree(spans, APP)
    by = {r["span_id"]: r for r in tree.iter_rows(named=True)}
    root, cli1, eng1, eng2 = by[sid("root")], by[sid("cli1")], by[sid("eng1")], by[sid("eng2")]
    assert root["offset_s"] == 0.0 and root["duration_s"] == pytest.approx(0.1)
    assert cli1["offset_s"] == pytest.approx(0.005)
    assert by[sid("decode2")]["offset_s"] == pytest.approx(0.070)
    # root: 100 ms minus its children's union: cli1 40 + tools [50, 58] 8 + cli2 35
    assert root["self_s"] == pytest.approx(0.017)
    assert root["children"] == 4
    assert eng1["self_s"] == pytest.approx(0.030 - 0.028)
    assert eng2["self_s"] == pytest.approx(0.025 - 0.019)
    assert by[sid("decode1")]["self_s"] == by[sid("decode1")]["duration_s"]
    assert by[sid("decode1")]["children"] == 0
    assert (eng1["request_id"], eng1["model"], eng1["output_tokens"]) == ("req-1", "tiny", 5)


def test_every_trace_and_roots_of_broken_links(spans: pl.DataFrame) -> None:
    tree = call_tree(spans)
    assert tree["trace_id"].unique(maintain_order=True).to_list() == [APP, LONE]
    lone = tree.filter(pl.col("trace_id") == LONE)
    assert lone.select("name", "depth", "category").rows() == [
        ("text_completion tiny", 0, "engine request"),
        ("queue", 1, "queue"),
        ("decode", 0, "other"),  # its parent was not loaded: a root, and not an engine phase
    ]
    assert lone["offset_s"].to_list() == pytest.approx([0.0, 0.001, 0.005])
    assert lone["position"].to_list() == [0, 1, 2]


def test_time_breakdown_per_request(spans: pl.DataFrame) -> None:
    bd = time_breakdown(spans)
    assert bd.schema == TIME_BREAKDOWN
    assert bd["request_id"].to_list() == ["req-1", "req-2"]  # req-3 has no client span
    one, two = bd.iter_rows(named=True)
    assert (one["client_span_id"], one["server_span_id"], one["engine_span_id"]) == (
        sid("cli1"),
        sid("http1"),
        sid("eng1"),
    )
    assert one["client_name"] == "chat tiny" and one["operation"] == "chat"
    assert one["stream"] is None and two["stream"] is True
    expected = {
        "client_s": 0.040, "server_s": 0.034, "engine_s": 0.030, "queue_s": 0.002,
        "prefill_s": 0.008, "decode_s": 0.018, "network_s": 0.006, "server_overhead_s": 0.004,
        "engine_other_s": 0.002,
    }  # fmt: skip
    assert {k: one[k] for k in expected} == pytest.approx(expected)
    # phases from the phase spans when the engine span lacks the attributes
    assert (two["queue_s"], two["prefill_s"], two["decode_s"]) == pytest.approx(
        (0.001, 0.003, 0.015)
    )
    parts = ["network_s", "server_overhead_s", "engine_other_s", "queue_s", "prefill_s", "decode_s"]
    for row in (one, two):
        assert sum(row[p] for p in parts) == pytest.approx(row["client_s"])
    assert one["input_tokens"] == 12 and one["output_tokens"] == 5
    assert time_breakdown(spans, LONE).is_empty()


def test_without_a_server_span_network_is_client_minus_engine(tmp_path: Path) -> None:
    trace = [
        s("c", "text_completion tiny", None, CLIENT, 0, 20, **CHAT),
        s("e", "text_completion tiny", "c", SERVER, 2, 15, **engine_attrs("r")),
    ]
    spans = load_spans(write_lines(tmp_path / "t.jsonl", [traces_line(trace)]), cache=False)
    (row,) = time_breakdown(spans).iter_rows(named=True)
    assert row["server_span_id"] is None and row["server_s"] is None
    assert row["network_s"] == pytest.approx(0.005)
    assert row["server_overhead_s"] is None
    assert row["engine_other_s"] == pytest.approx(0.015)  # no phases recorded at all


def test_nearest_client_wins_through_a_gateway(tmp_path: Path) -> None:
    # app client -> gateway server -> gateway's own client -> engine server -> engine request
    trace = [
        s("c0", "chat tiny", None, CLIENT, 0, 50, **CHAT),
        s("g", "POST /gateway", "c0", SERVER, 1, 48),
        s("c1", "chat tiny", "g", CLIENT, 2, 40, **CHAT),
        s("h", "POST /v1/chat/completions", "c1", SERVER, 3, 38),
        s("e", "chat tiny", "h", SERVER, 4, 30, **engine_attrs("r")),
    ]
    spans = load_spans(write_lines(tmp_path / "t.jsonl", [traces_line(trace)]), cache=False)
    (row,) = time_breakdown(spans).iter_rows(named=True)
    assert (row["client_span_id"], row["server_span_id"]) == (sid("c1"), sid("h"))


def test_duplicates_and_cycles_do_not_break_the_layout(tmp_path: Path) -> None:
    trace = [
        s("x", "a", "y", INTERNAL, 0, 5),
        s("y", "b", "x", INTERNAL, 1, 5),
        s("r", "root", None, INTERNAL, 2, 5),
        s("r", "root", None, INTERNAL, 2, 5),  # the same span loaded twice
    ]
    spans = load_spans(write_lines(tmp_path / "t.jsonl", [traces_line(trace)]), cache=False)
    tree = call_tree(spans)
    assert sorted(tree["name"].to_list()) == ["a", "b", "root"]
    assert tree["depth"].to_list() == [0, 0, 0]


def test_empty_and_wrong_inputs(spans: pl.DataFrame) -> None:
    assert call_tree(empty(SPANS)).schema == CALL_TREE
    assert call_tree(empty(SPANS)).is_empty()
    assert time_breakdown(empty(SPANS)).schema == TIME_BREAKDOWN
    assert call_tree(spans, "f" * 32).is_empty()
    assert time_breakdown(conform(spans.head(0), SPANS)).is_empty()
    with pytest.raises(SchemaError, match="kind"):
        call_tree(spans.drop("kind"))
