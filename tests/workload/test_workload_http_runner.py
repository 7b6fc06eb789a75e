from __future__ import annotations

import asyncio
import io
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sagellm_obs import configure
from sagellm_obs.frames import load
from sagellm_obs.protocol import Request
from sagellm_obs.protocol.tracecontext import otel_trace_id
from sagellm_obs.store import RunStore, files_of, iter_jsonl
from sagellm_obs.workload import build_workload
from sagellm_obs.workload.http_runner import request_body, run_http_workload
from sagellm_obs.workload.item import WorkItem

pytestmark = pytest.mark.engine

API_KEY = "http-runner-key"


@dataclass
class Served:
    server: Any
    telemetry: Any
    run_dir: Path

    @property
    def url(self) -> str:
        return str(self.server.url)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from sagellm_obs.engine import EngineConfig
    from sagellm_obs.server import BackgroundServer, ServerOptions

    run_dir = tmp_path_factory.mktemp("http-server-run")
    tel = configure(
        run_dir=run_dir,
        engine_id="http-runner-server",
        otlp_endpoint=False,
        make_current=False,
    )
    config = EngineConfig(in_process=True, kv_cache_memory_bytes=64 * 2**20)
    server = BackgroundServer(config, telemetry=tel, options=ServerOptions(port=0, api_key=API_KEY))
    try:
        server.start()
    except BaseException:
        tel.shutdown()
        raise
    try:
        yield Served(server, tel, run_dir)
    finally:
        try:
            server.stop()
        finally:
            tel.shutdown()


def _too_long() -> WorkItem:
    req = Request(
        request_id="too-long-00001",
        trace_id="too-long-00001",
        prompt="word " * 5000,
        max_tokens=4,
        metadata={"ignore_eos": True},
    )
    return WorkItem(request=req, kind="custom")


def _client_rows(run_dir: Path) -> list[dict[str, Any]]:
    return [obj for f in files_of(run_dir, "requests-client") for _, obj in iter_jsonl(f)]


def test_request_body_routes_prompt_and_chat() -> None:
    items = build_workload("shared_prefix", n_requests=1, max_tokens=5, seed=0)
    path, body = request_body(items[0].request, "m")
    assert path == "/v1/completions"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] is True and body["model"] == "m" and body["max_tokens"] == 5
    chat = build_workload("chat_sessions", n_requests=1, max_tokens=5, seed=0)
    path, body = request_body(chat[0].request, None)
    assert path == "/v1/chat/completions" and body["messages"] and "model" not in body


def test_http_workload_joins_server_spans(served: Served, tmp_path: Path) -> None:
    items = build_workload("shared_prefix", n_requests=16, max_tokens=8, seed=0)
    bad = _too_long()
    items.insert(5, bad)
    client_dir = tmp_path / "client-run"
    store = RunStore(client_dir)
    seen: list[int] = []
    t0 = time.perf_counter()
    try:
        result = asyncio.run(
            run_http_workload(
                served.url,
                items,
                store=store,
                concurrency=4,
                api_key=API_KEY,
                on_progress=lambda p: seen.append(p.done),
            )
        )
    finally:
        store.close()
    elapsed = time.perf_counter() - t0
    assert elapsed < 120
    assert not result.interrupted
    assert result.progress.done == 17 and result.progress.failed == 1
    assert result.progress.output_tokens == 16 * 8
    assert seen and max(seen) == 17

    rows = {r["request_id"]: r for r in _client_rows(client_dir)}
    assert set(rows) == {it.request.request_id for it in items}
    failed = rows.pop(bad.request.request_id)
    assert failed["error"] == 400 and failed["client_ttft_s"] is None
    for it in items:
        if it is bad:
            continue
        row = rows[it.request.request_id]
        assert row["error"] is None, row
        assert row["finish_reason"] == "length"
        assert row["output_tokens"] == 8
        assert len(row["client_itl_ms"]) == max(row["chunks"] - 1, 0)
        if row["chunks"]:
            assert 0 < row["client_ttft_s"] <= row["client_e2e_s"]
        else:  # the tiny random model: some prompts only yield tokens that decode to ""
            assert row["client_ttft_s"] is None and row["client_e2e_s"] > 0
        assert row["trace_id"] == otel_trace_id(it.request.trace_id)
        assert row["endpoint"].endswith("/v1/completions")

    # The server's run folder: same request ids and trace ids.
    assert served.telemetry.flush()
    server = load(served.run_dir, cache=False)
    engine = server.requests.filter(
        (pl.col("source") == "sagellm") & pl.col("request_id").is_in(list(rows))
    )
    assert sorted(engine["request_id"].to_list()) == sorted(rows)
    for rid, trace_id in zip(engine["request_id"], engine["trace_id"], strict=True):
        assert trace_id == rows[rid]["trace_id"]

    # Client rows joined to the engine spans by the loader (one folder with both).
    merged = tmp_path / "merged"
    merged.mkdir()
    for f in [*served.run_dir.glob("traces-*.jsonl"), *client_dir.glob("requests-client-*")]:
        shutil.copy(f, merged / f.name)
    joined = load(merged, cache=False).requests.filter(pl.col("request_id").is_in(list(rows)))
    assert joined.height == 16
    assert joined["client_e2e_s"].null_count() == 0
    with_text = {rid for rid, r in rows.items() if r["chunks"]}
    assert len(with_text) >= 8
    joined = joined.filter(pl.col("request_id").is_in(list(with_text)))
    assert (joined["client_ttft_s"] >= joined["ttft_s"]).all(), joined.select(
        "request_id", "ttft_s", "client_ttft_s"
    )
    assert (joined["client_e2e_s"] >= joined["ttft_s"]).all()


def test_http_workload_cancel_keeps_rows(served: Served, tmp_path: Path) -> None:
    items = build_workload("shared_prefix", n_requests=200, max_tokens=64, seed=1)
    store = RunStore(tmp_path / "cancelled-run")

    async def main() -> Any:
        task = asyncio.create_task(
            run_http_workload(served.url, items, store=store, concurrency=2, api_key=API_KEY)
        )
        await asyncio.sleep(1.0)
        task.cancel()
        return await task

    try:
        result = asyncio.run(main())
    finally:
        store.close()
    assert result.interrupted
    rows = _client_rows(tmp_path / "cancelled-run")
    assert rows and len(rows) == len(result.client) < len(items)
    assert any(r["error"] == "cancelled" for r in rows)


def test_main_job_endpoint_summarizes_client_rows(served: Served, tmp_path: Path) -> None:
    import json

    from rich.console import Console

    from sagellm_obs.cli_run import MainJob

    out = tmp_path / "endpoint-run"
    job = MainJob(
        requests=6, max_tokens=4, concurrency=3, out=out, endpoint=served.url, api_key=API_KEY
    )
    assert job.run(Console(width=120, file=io.StringIO())) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"] == 6 and summary["ok"] == 6
    assert "server's run folder" in summary["note"]
    assert summary["latency"]["E2E (client)"]["p50"] > 0
    assert summary["output_token_throughput"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["workload"]["endpoint"] == served.url
