"""What a run was: the set-up from the manifest in the summary, report.html and compare.html; the
recorded SLOs used by ``report``; TTFT's parts that add up."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from report_html import table_dict, tables
from report_run import build_run
from rich.console import Console
from typer.testing import CliRunner

from sagellm_obs import frames
from sagellm_obs.cli import app
from sagellm_obs.report import write_report, write_run_comparison
from sagellm_obs.run_comparison import render_comparison
from sagellm_obs.run_summary import render_summary, summarize

SLO = {"ttft_s": 0.04}


def _record_setup(run: Path, **workload: Any) -> Path:
    """Merge into the manifest what ``sagellm-obs run`` and the engine start record."""
    path = run / "manifest.json"
    manifest = json.loads(path.read_text())
    engine_args = {
        "model": "/models/tiny-test",
        "served_model_name": "tiny-test",
        "dtype": "float32",
        "max_model_len": 1024,
        "enable_prefix_caching": True,
        "kv_cache_memory_bytes": 128 * 2**20,
        "max_num_seqs": workload.pop("max_num_seqs", 8),
    }
    manifest.update(
        model="tiny-test",
        engine_args=engine_args,
        workload={
            "name": "shared_prefix",
            "requests": 30,
            "rate": None,
            "concurrency": 4,
            "max_tokens": 16,
            "seed": 0,
            "prefix_caching": True,
            "slo": SLO,
            "endpoint": None,
            **workload,
        },
    )
    path.write_text(json.dumps(manifest))
    return run


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record_setup(build_run(tmp_path_factory.mktemp("setup") / "recorded", 30, seed=4))


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = build_run(tmp_path_factory.mktemp("setup") / "other", 30, seed=5, slowdown=1.5)
    return _record_setup(run, concurrency=16, rate=20.0, max_num_seqs=2)


def _text(renderable: Any, width: int = 200) -> str:
    out = io.StringIO()
    Console(file=out, width=width).print(renderable)
    return out.getvalue()


def test_the_terminal_summary_names_the_set_up(recorded: Path) -> None:
    text = _text(render_summary(summarize(recorded)))
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in text.split("Latency")[0].splitlines()
        if line.count("│") == 3
    }
    assert rows["workload"] == "shared_prefix"
    assert rows["requests"] == "30"
    assert rows["load"] == "concurrency 4 (closed loop)"
    assert rows["max_tokens"] == "16"
    assert rows["prefix caching"] == "on"
    assert rows["model"] == "tiny-test"
    assert "max_num_seqs=8" in rows["engine args"]
    assert "kv_cache_memory_bytes=128MiB" in rows["engine args"]
    assert rows["SLOs"] == "ttft ≤ 40 ms"
    assert rows["versions"].startswith("sagellm-obs ")  # configure() records them


def test_report_html_names_the_set_up(recorded: Path, tmp_path: Path) -> None:
    page = write_report(recorded, tmp_path / "report.html").read_text()
    setup = table_dict(tables(page)["Set-up"])
    assert setup["workload"] == ["shared_prefix"]
    assert setup["load"] == ["concurrency 4 (closed loop)"]
    assert setup["SLOs"] == ["ttft ≤ 40 ms"]
    assert "max_num_seqs=8" in setup["engine args"][0]
    assert "python" in setup["versions"][0]


def test_report_uses_the_recorded_slos_and_an_override_says_so(recorded: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["report", str(recorded)], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    summary = json.loads((recorded / "summary.json").read_text())
    requests = frames.load(recorded, cache=False).requests
    assert summary["slo"] == SLO
    assert summary["goodput"] == pytest.approx(frames.goodput(requests, SLO))
    assert 0 < summary["goodput"] < 1  # the SLO is one some requests miss
    assert "goodput (ttft ≤ 40 ms)" in done.output
    assert "from --slo" not in done.output

    done = runner.invoke(
        app, ["report", str(recorded), "--slo", "ttft=0.5"], env={"COLUMNS": "200"}
    )
    assert done.exit_code == 0, done.output
    assert "goodput SLOs from --slo: ttft ≤ 500 ms (the run recorded ttft ≤ 40 ms)" in done.output
    summary = json.loads((recorded / "summary.json").read_text())
    assert summary["slo"] == {"ttft_s": 0.5}
    assert summary["goodput"] == pytest.approx(frames.goodput(requests, {"ttft_s": 0.5}))


def test_ttft_is_frontend_plus_queue_plus_prefill(recorded: Path) -> None:
    summary = summarize(recorded)
    lat = summary.latency
    assert list(lat)[:4] == ["TTFT", "frontend", "queue", "prefill"]
    parts = lat["frontend"]["mean"] + lat["queue"]["mean"] + lat["prefill"]["mean"]
    assert parts == pytest.approx(lat["TTFT"]["mean"], rel=1e-9)
    # The fixture's frontend hands each request over 0.5 ms after its arrival.
    assert lat["frontend"]["p50"] == pytest.approx(0.0005, abs=1e-6)
    text = _text(render_summary(summary))
    assert "  frontend" in text and "TTFT = frontend + queue + prefill" in text


def test_compare_warns_when_set_ups_differ(recorded: Path, other: Path, tmp_path: Path) -> None:
    text = _text(render_comparison(summarize(recorded), summarize(other)))
    assert "set-ups differ" in text
    assert "concurrency: 4 in A, 16 in B" in text
    assert "arrivals: closed loop in A, Poisson 20 req/s in B" in text
    assert "engine max_num_seqs: 8 in A, 2 in B" in text
    assert "max_tokens" not in text.split("Run comparison")[0]  # the same in both

    page = write_run_comparison([recorded, other], tmp_path / "compare.html").read_text()
    assert "set-ups differ" in page
    assert "concurrency: 4 in recorded, 16 in other" in page
    setup = tables(page)["Set-up"]
    load = next(row for row in setup if row[0][0] == "load")
    assert load[1] == ("concurrency 4 (closed loop)", "setup")
    assert load[2] == ("Poisson 20 req/s, concurrency ≤ 16", "setup differs")
    run = {row[0][0]: row[1:] for row in tables(page)["Run"] if row}
    sa, sb = summarize(recorded), summarize(other)
    hit = run["prefix-cache hit rate (tokens)"]
    assert [t for t, _ in hit] == [
        f"{sa.prefix_hit_rate:.1%}",
        f"{sb.prefix_hit_rate:.1%}",
        f"{(sb.prefix_hit_rate - sa.prefix_hit_rate) * 100:+.1f} pp",
        "",
    ]


def test_the_same_set_up_gives_no_warning(recorded: Path) -> None:
    text = _text(render_comparison(summarize(recorded), summarize(recorded)))
    assert "set-ups differ" not in text


def test_vllms_tracing_endpoint_is_a_row_not_a_difference() -> None:
    from sagellm_obs.run_setup import RunSetup, setup_differences

    base = {"engine_args": {"max_num_seqs": 8}, "workload": {"name": "phases"}}
    traced = [
        RunSetup.from_manifest(
            {**base, "engine_args": {"max_num_seqs": 8, "otlp_traces_endpoint": f"http://h:{p}"}}
        )
        for p in (4001, 4002)
    ]
    assert ("vLLM tracing", "on") in traced[0].rows()
    assert "otlp_traces_endpoint" not in traced[0].engine_text()
    assert setup_differences(traced) == []  # the receiver's port is no set-up
    plain = RunSetup.from_manifest(base)
    assert setup_differences([plain, traced[0]]) == ["vLLM tracing: off in A, on in B"]
    events = RunSetup.from_manifest(
        {**base, "engine_args": {"max_num_seqs": 8, "kv_events_config": {"endpoint": "tcp://x:1"}}}
    )
    assert ("KV events", "on") in events.rows() and "kv_events" not in events.engine_text()
    assert setup_differences([plain, events]) == ["KV events: off in A, on in B"]


def test_the_servers_event_loop_is_shown_and_compared() -> None:
    from sagellm_obs.run_setup import RunSetup, setup_differences

    def served(loop: str | None) -> RunSetup:
        server = {"host": "127.0.0.1", "port": 8000, **({"loop": loop} if loop else {})}
        return RunSetup.from_manifest({"server": server})

    assert ("served on", "127.0.0.1:8000 (uvloop)") in served("uvloop").rows()
    assert ("served on", "127.0.0.1:8000") in served(None).rows()  # recorded before the loop
    assert setup_differences([served("asyncio"), served("uvloop")]) == [
        "server event loop: asyncio in A, uvloop in B"
    ]
    assert setup_differences([served(None), served("uvloop")]) == []
