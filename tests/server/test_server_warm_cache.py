"""A run that starts on a warm prefix cache is flagged; one that starts cold is not.

The same workload (same prompts) is sent twice to one real server by ``run --endpoint``: the
first run meets a cache that never saw its prompts (the shared-prefix workload still hits after
the first request of each family, which must not count), the second one meets the first one's
blocks. Both checks are exercised on real data: the one on our spans' prefix blocks (the
server's run folder) and the one on the client rows' families. The servers' own counters
(``vllm:prefix_cache_*`` before/after) are compared with our spans' cached tokens.
"""

from __future__ import annotations

import io
import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pytest
from rich.console import Console

from sagellm_obs.frames import load
from sagellm_obs.frames.warm_cache import warm_cache
from sagellm_obs.store import files_of, iter_jsonl

if TYPE_CHECKING:
    from conftest import ServerHarness

pytestmark = pytest.mark.engine

N = 8  # 4 families x 2: the second of each family hits its family's prefix


def _run(harness: ServerHarness, out: Path, seed: int) -> tuple[dict[str, Any], str]:
    from sagellm_obs.cli_run import MainJob

    job = MainJob(
        workload="shared_prefix",
        requests=N,
        max_tokens=2,
        concurrency=2,
        seed=seed,
        out=out,
        endpoint=harness.url,
        api_key=harness.api_key,
    )
    console = Console(width=200, file=io.StringIO())
    assert job.run(console) == 0, console.file.getvalue()  # type: ignore[attr-defined]
    text: str = console.file.getvalue()  # type: ignore[attr-defined]
    return json.loads((out / "summary.json").read_text()), text


def _client_rows(out: Path) -> list[dict[str, Any]]:
    return [obj for f in files_of(out, "requests-client") for _, obj in iter_jsonl(f)]


_RUNS: dict[int, list[tuple[dict[str, Any], str, list[dict[str, Any]]]]] = {}


@pytest.fixture
def two_runs(
    harness: ServerHarness, tmp_path_factory: pytest.TempPathFactory
) -> list[tuple[dict[str, Any], str, list[dict[str, Any]]]]:
    """Once per server (the harness is function-scoped but shared)."""
    if id(harness) not in _RUNS:
        _RUNS.clear()
        _RUNS[id(harness)] = _two_runs(harness, tmp_path_factory)
    return _RUNS[id(harness)]


def _two_runs(
    harness: ServerHarness, tmp_path_factory: pytest.TempPathFactory
) -> list[tuple[dict[str, Any], str, list[dict[str, Any]]]]:
    seed = secrets.randbelow(2**31)  # prompts this server has never seen
    work = tmp_path_factory.mktemp("warm-cache")
    out = []
    for name in ("cold", "warm"):
        summary, text = _run(harness, work / name, seed)
        out.append((summary, text, _client_rows(work / name)))
    return out


def test_cold_run_is_not_flagged_warm_run_is(
    two_runs: list[tuple[dict[str, Any], str, list[dict[str, Any]]]],
) -> None:
    (cold, cold_text, _), (warm, warm_text, _) = two_runs
    # client rows, by family: the cold run's in-run hits are legitimate
    assert cold["warm_cache"]["checked"] == N
    assert cold["warm_cache"]["warm_start"] is False
    assert cold["warm_cache"]["warm_requests"] == 0
    assert cold["prefix_hit_rate"] > 0  # it did hit, on its own prefixes
    assert "Warm prefix cache" not in cold_text
    assert warm["warm_cache"]["warm_start"] is True
    assert warm["warm_cache"]["warm_requests"] >= N // 2  # every family's first request
    assert warm["warm_cache"]["inherited_tokens"] > 0
    assert "Warm prefix cache" in warm_text


def test_the_same_on_the_servers_spans(
    harness: ServerHarness, two_runs: list[tuple[dict[str, Any], str, list[dict[str, Any]]]]
) -> None:
    harness.flush()
    frames = load(harness.run_dir, cache=False)
    (_, _, cold_rows), (_, _, warm_rows) = two_runs
    cold = warm_cache(frames.requests, frames.spans, client=cold_rows)
    warm = warm_cache(frames.requests, frames.spans, client=warm_rows)
    assert cold.checked == N and warm.checked == N
    assert not cold.warm_start and cold.warm_requests == 0
    assert warm.warm_start and warm.warm_requests >= N // 2
    # every inherited token is a block the cold run stored: at most its prompts' full blocks
    assert warm.inherited_tokens <= sum(int(r["cached_tokens"]) for r in warm_rows)


def _spans_of(req: pl.DataFrame, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Our request spans of one client run (a rerun reuses its request ids: by time)."""
    start = min(int(r["client_start_unix_nano"]) for r in rows)
    end = max(int(r["client_start_unix_nano"]) + int(r["client_e2e_s"] * 1e9) for r in rows)
    ids = [str(r["request_id"]) for r in rows]
    at = pl.col("arrival").dt.epoch("ns")
    return req.filter(pl.col("request_id").is_in(ids), at >= start, at <= end)


def test_server_counters_delta_equals_our_cached_tokens(
    harness: ServerHarness, two_runs: list[tuple[dict[str, Any], str, list[dict[str, Any]]]]
) -> None:
    """vLLM's counters (its /metrics, before/after each run) against our spans of the run."""
    harness.flush()
    req = load(harness.run_dir, cache=False).requests
    for summary, _, rows in two_runs:
        ours = _spans_of(req, rows)
        assert ours.height == N
        server = summary["server_counters"]
        assert server["errors"] == {}
        assert server["requests"] == N
        assert server["prefix_hits"] == ours["cached_tokens"].sum()
        assert server["prefix_queries"] == ours["input_tokens"].sum()
        assert server["prompt_tokens"] == ours["input_tokens"].sum()
        assert server["generation_tokens"] == ours["output_tokens"].sum()
        # and the client's own view (the usage the server answered) gives the same rate
        assert summary["prefix_hit_rate"] == pytest.approx(server["prefix_hit_rate"])


def test_report_and_compare_say_so(
    two_runs: list[tuple[dict[str, Any], str, list[dict[str, Any]]]],
) -> None:
    from sagellm_obs.run_comparison import render_comparison
    from sagellm_obs.run_summary import summarize

    (cold, _, _), (warm, _, _) = two_runs
    assert "Warm prefix cache" not in (Path(cold["run_dir"]) / "report.html").read_text()
    page = (Path(warm["run_dir"]) / "report.html").read_text()
    assert "Warm prefix cache" in page and "prefix-cache hit rate (its /metrics" in page
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(render_comparison(summarize(cold["run_dir"]), summarize(warm["run_dir"])))
    text = console.export_text()
    assert "B: YES" in text and "A: " not in text.split("warm before the run")[1]
    assert "server's prefix-cache hit rate" in text
