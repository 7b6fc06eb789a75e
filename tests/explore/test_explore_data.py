"""The explorer's Polars side: run facts, filters, request tables and HTML escaping."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sagellm_obs.explore.data import (
    Filters,
    html_table,
    load_run,
    normalize_runs,
    request_attributes,
    request_spans,
    slowest,
)
from sagellm_obs.frames import load


def test_run_facts(run_mixed: Path) -> None:
    run = load_run("mixed", run_mixed)
    assert run.models == ["model-a", "model-b"] and run.engines == ["eng-1", "eng-2"]
    assert run.t0 is not None and run.duration_s > 5.8
    req = run.frames.requests
    assert run.max_e2e_ms == pytest.approx(float(req["e2e_s"].max()) * 1000.0)  # type: ignore[arg-type]
    assert run.requests(Filters()).height == 30
    assert run.requests(Filters(model="model-a", engine="eng-2")).is_empty()  # round robin
    window = run.requests(Filters(start_s=1.0, end_s=2.0))
    assert window["offset_s"].is_between(1.0, 2.0).all()


def test_empty_run_facts(run_empty: Path) -> None:
    run = load_run("empty", run_empty)
    assert run.t0 is None and run.duration_s == 0.0 and run.models == []
    assert run.requests(Filters(start_s=1.0)).is_empty()
    assert run.steps(Filters(start_s=1.0)).is_empty()


def test_slowest_and_request_tables(run_a: Path) -> None:
    frames = load(run_a)
    top = slowest(frames.requests, "ttft_s", 5)
    assert top.height == 5 and top["ttft_s"][0] == frames.requests["ttft_s"].max()
    with pytest.raises(ValueError, match="unknown sort column"):
        slowest(frames.requests, "nope")
    row = frames.requests.row(3, named=True)
    spans = request_spans(frames.spans, row)
    assert spans["name"].to_list()[1:] == ["queue", "prefill", "decode"]
    assert spans["start_ms"][0] == pytest.approx(0.0, abs=1e-3)
    assert spans["details"][0].startswith(f"in {row['input_tokens']} tok")
    attrs = request_attributes(frames.spans, row)
    keys = attrs["key"].to_list()
    assert keys[0] == "request id" and "gen_ai.request.max_tokens" in keys
    assert dict(attrs.iter_rows())["TTFT"].endswith(" ms")


def test_html_table_escapes_and_truncates() -> None:
    frame = pl.DataFrame(
        {"key": ["<script>x</script>", "b"], "n": [1.5, None], "hi": [True, False]}
    )
    out = html_table(frame, caption="A & B", highlight="hi", max_rows=1)
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "A &amp; B" in out and "font-weight:600" in out
    assert "1 more rows" in out and ">hi<" not in out


def test_normalize_runs_names(run_a: Path, run_b: Path, runs_root: Path) -> None:
    assert list(normalize_runs(run_a)) == ["baseline"]
    assert list(normalize_runs({"x": run_a})) == ["x"]
    assert list(normalize_runs(runs_root)) == ["baseline", "slower"]
    assert list(normalize_runs([run_a, str(run_b)])) == ["baseline", "slower"]
    assert list(normalize_runs(str(runs_root / "*"))) == ["baseline", "slower"]
    assert list(normalize_runs(str(runs_root / "slow*"))) == ["slower"]
    with pytest.raises(FileNotFoundError, match="matches"):
        normalize_runs(str(runs_root / "nope*"))
