"""256 concurrent streaming clients against the real server, for a bounded time.

Every request gets exactly one trace in the local store (the HTTP span, the engine's request span
under it, and ``queue``/``prefill``/``decode`` under that), and the request counter and TTFT
histogram counts on ``/metrics`` (ours and vLLM's) grow by exactly the number of requests sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx
import polars as pl
import pytest
from hardening_procs import ServerProcess, metric_totals, wait_until

from sagellm_obs import semconv as sc
from sagellm_obs.frames import load

CLIENTS = 256
MAX_TOKENS = 6
COMP, CHAT = "/v1/completions", "/v1/chat/completions"
PREFIX = "Review this function and list its bugs, one per line, most severe first. "

# Counted once per finished request: ours (GenAI/sagellm) and vLLM's own.
COUNTERS = (
    sc.M_REQUESTS.prometheus_name,
    f"{sc.M_TTFT.prometheus_name}_count",
    f"{sc.M_REQUEST_DURATION.prometheus_name}_count",
    "vllm:request_success_total",
    "vllm:time_to_first_token_seconds_count",
)


@dataclass
class Sent:
    request_id: str
    path: str
    trace_id: str
    tokens: int


async def _client(
    http: httpx.AsyncClient,
    i: int,
    deadline: float,
    sent: list[Sent],
    failed: list[str],
    tag: str,
) -> None:
    k = 0
    while True:
        rid = f"{tag}-{i:03d}-{k:03d}"
        path = CHAT if (i + k) % 2 else COMP
        body: dict[str, Any] = {
            "max_tokens": MAX_TOKENS,
            "ignore_eos": True,  # a fixed number of tokens per request
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        text = f"{PREFIX} def f{i}(x): return x * {k}"
        if path == CHAT:
            body["messages"] = [{"role": "user", "content": text}]
        else:
            body["prompt"] = text
        t0 = time.monotonic()
        stage = "connect"
        try:
            async with http.stream("POST", path, json=body, headers={"X-Request-Id": rid}) as resp:
                stage = "read"
                assert resp.status_code == 200, await resp.aread()
                frames = [ln[6:] async for ln in resp.aiter_lines() if ln.startswith("data: ")]
                assert frames[-1] == "[DONE]", frames[-3:]
                usage = json.loads(frames[-2])["usage"]
                sent.append(Sent(rid, path, resp.headers["x-trace-id"], usage["completion_tokens"]))
        except httpx.HTTPError as exc:  # keep going: the report counts every failure
            failed.append(f"{rid} {stage} after {time.monotonic() - t0:.2f} s: {exc!r}")
        k += 1
        if time.monotonic() > deadline:
            return


async def _run_clients(
    server: ServerProcess, seconds: float, tag: str
) -> tuple[list[Sent], list[str]]:
    sent: list[Sent] = []
    failed: list[str] = []
    # Connections are reused, as real clients do: the server keeps idle connections longer
    # (ServerOptions.keep_alive_s) than httpx's 5 s expiry, so it never closes one as a client
    # sends on it (with equal timeouts that race showed up as ReadErrors under load).
    limits = httpx.Limits(max_connections=CLIENTS + 8, max_keepalive_connections=CLIENTS + 8)
    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers(), timeout=180, limits=limits
    ) as http:
        deadline = time.monotonic() + seconds
        clients = (_client(http, i, deadline, sent, failed, tag) for i in range(CLIENTS))
        await asyncio.gather(*clients)
    return sent, failed


def _settled_counters(server: ServerProcess) -> dict[str, float]:
    """The counters once two scrapes half a second apart agree (the telemetry thread is idle)."""
    last: dict[str, float] = {}

    def probe() -> dict[str, float] | None:
        nonlocal last
        totals = metric_totals(server.metrics_text())
        now = {name: totals.get(name, 0.0) for name in COUNTERS}
        same = now == last
        last = now
        return now if same else None

    return dict(wait_until(probe, 60, "the metrics to settle", every=0.5))


def _hammer(server: ServerProcess, seconds: float, tag: str) -> None:
    before = _settled_counters(server)
    t0 = time.monotonic()
    sent, failed = asyncio.run(_run_clients(server, seconds, tag))
    elapsed = time.monotonic() - t0
    assert not failed, f"{len(failed)} request(s) failed: {failed[:5]}\n{server.log_text()[-3000:]}"
    n = len(sent)
    assert n >= CLIENTS, n
    assert all(s.tokens == MAX_TOKENS for s in sent)
    assert len({s.request_id for s in sent}) == n

    # /metrics: every counter grew by exactly the requests sent.
    def grown() -> dict[str, float] | None:
        totals = metric_totals(server.metrics_text())
        delta = {name: totals.get(name, 0.0) - before[name] for name in COUNTERS}
        return delta if all(v >= n for v in delta.values()) else None

    wait_until(grown, 60, f"the counters to count {n} requests")
    delta = {name: value - before[name] for name, value in _settled_counters(server).items()}
    assert delta == dict.fromkeys(COUNTERS, float(n)), delta

    # The local store: one trace per request with its phase spans. The telemetry thread writes
    # the engine's spans, the store's batch processor the HTTP spans (up to its delay later):
    # wait for both, 5 spans a trace, before looking (a failed run once looked in between).
    trace_ids = [s.trace_id for s in sent]

    def stored() -> list[pl.DataFrame]:
        spans = load(server.run_dir, cache=False, errors="skip").spans
        mine = spans.filter(pl.col("request_id").str.starts_with(f"{tag}-"))
        in_traces = spans.filter(pl.col("trace_id").is_in(trace_ids)).height
        return [spans] if mine.height >= n and in_traces >= 5 * n else []

    (spans,) = wait_until(stored, 90, f"{n} requests' spans in the store", every=1.0)
    engine = spans.filter(pl.col("request_id").str.starts_with(f"{tag}-"))
    assert engine.height == n, "a request has more than one engine span"
    by_id = {r["request_id"]: r for r in engine.iter_rows(named=True)}
    traces = spans.filter(pl.col("trace_id").is_in(trace_ids))
    per_trace = traces.group_by("trace_id").agg(pl.struct(pl.all()).alias("spans"))
    assert per_trace.height == n, "two requests share a trace"
    trees = {row["trace_id"]: row["spans"] for row in per_trace.iter_rows(named=True)}
    for s in sent:
        req = by_id[s.request_id]
        assert req["trace_id"] == s.trace_id, s
        assert req["stream"] is True and req["output_tokens"] == MAX_TOKENS
        tree = trees[s.trace_id]
        assert len(tree) == 5, sorted(x["name"] for x in tree)
        http_span = next(x for x in tree if x["name"] == f"POST {s.path}")
        assert http_span["parent_span_id"] is None and http_span["kind"] == "SERVER"
        assert req["parent_span_id"] == http_span["span_id"]
        phases = sorted(x["name"] for x in tree if x["parent_span_id"] == req["span_id"])
        assert phases == sorted(sc.PHASE_SPANS), s
    rate = n / elapsed
    print(f"{n} streamed requests from {CLIENTS} clients in {elapsed:.1f} s ({rate:.0f}/s)")


@pytest.mark.engine
@pytest.mark.timeout(300)
def test_256_streaming_clients(shared_server: ServerProcess) -> None:
    _hammer(shared_server, seconds=6.0, tag="conc")


@pytest.mark.soak
@pytest.mark.slow
@pytest.mark.engine
@pytest.mark.timeout(3600)
def test_256_streaming_clients_soak(shared_server: ServerProcess) -> None:
    """The same for longer: ``SAGELLM_OBS_SOAK_SECONDS`` (default 300) of traffic."""
    _hammer(shared_server, float(os.environ.get("SAGELLM_OBS_SOAK_SECONDS", "300")), tag="soak")
