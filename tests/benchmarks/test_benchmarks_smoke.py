"""Every benchmark runs at a toy size so none can rot. No timing is asserted: only that each one
runs, writes its result file, and renders its table into the document between its markers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import BENCHMARKS  # noqa: E402
from benchmarks import _docs as docs  # noqa: E402
from benchmarks.__main__ import module  # noqa: E402
from benchmarks._common import Options  # noqa: E402


def _run_in_process(name: str, out: Path) -> dict[str, object]:
    module(name).run(Options(preset="toy", out_dir=out, show_progress=False))
    doc: dict[str, object] = json.loads((out / f"{name}.json").read_text())
    return doc


def _run_subprocess(name: str, out: Path) -> dict[str, object]:
    """Benchmarks that start vLLM run in their own process (vLLM sets global tracing state)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", name, "--toy", "--no-progress", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc: dict[str, object] = json.loads((out / f"{name}.json").read_text())
    return doc


def _renders(name: str, doc: dict[str, object], out: Path) -> None:
    assert doc["benchmark"] == name
    assert doc["command"] == f"python -m benchmarks {name} --toy"
    text = module(name).render(doc)
    assert "|" in text or "Not yet measured" in text
    page = out / "benchmarks.md"
    page.write_text(
        f"# Bench\n\nprose before\n\n{docs.begin(name)}\nold\n{docs.end(name)}\n\nafter\n"
    )
    docs.update(page, out, {name: module(name).render}, {name: name}, {name: module(name).headline})
    new = page.read_text()
    assert "prose before" in new and "after" in new and "\nold\n" not in new
    assert docs.begin("machine") in new
    assert docs.begin("summary") in new and f"[{name}]" in new


def test_telemetry_cost(tmp_path: Path) -> None:
    doc = _run_in_process("telemetry_cost", tmp_path)
    results = doc["results"]
    assert isinstance(results, dict)
    for variant in ("full", "spans_only", "copies"):
        v = results["variants"][variant]
        assert v["spans_exported"] == v["spans_expected"]  # nothing dropped (copies: in Parquet)
    summarised = results["quiet_reps"] if results["primary"] == "quiet" else results["reps_run"]
    assert results["copies_us"]["n"] == summarised  # one paired figure per repetition shown
    assert results["profile_ours"]["parts"]
    _renders("telemetry_cost", doc, tmp_path)


def test_loading(tmp_path: Path) -> None:
    doc = _run_in_process("loading", tmp_path)
    results = doc["results"]
    assert isinstance(results, dict)
    (size,) = results["sizes"].values()
    loaders = size["loaders"]
    assert all(not x["failed"] for x in loaders.values()), loaders
    spans = size["store"]["spans"]
    ours = ("sagellm_seal", "sagellm_first", "sagellm_first_spans", "sagellm_rebuild")
    for name in (*ours, "sagellm_cold", "pandas_json"):
        assert loaders[name]["rows"] == spans, name
    raw = size["raw"]
    assert raw["sagellm_rebuild"][0]["rebuilt_files"] == size["store"]["files"]
    assert raw["sagellm_lazy_ttft"][0]["requests"] == size["store"]["requests"]
    assert loaders["sagellm_seal"]["cpu_us_per_request"] > 0
    assert size["copies_bytes"] > 0 and size["first_over_ndjson_runs"]
    _renders("loading", doc, tmp_path)
    rows = module("loading").headline(doc)
    assert [r[0].split(": ", 1)[1] for r in rows][:3] == [
        "first load (store's copies, spans deferred)",
        "first load / `polars.read_ndjson`",
        "first load + first `.spans` (spans loaded)",
    ]
    assert rows[2][2].endswith(" GB")  # measured, not "not run"


def test_loading_first_load_needs_the_stores_copies(tmp_path: Path) -> None:
    from benchmarks import loading
    from benchmarks._synth_store import write_store
    from sagellm_obs.store.layout import COLUMNAR_DIR

    run = tmp_path / "run"
    write_store(run, 400)
    # Never sealed: the first load would measure a rebuild, so the benchmark stops.
    with pytest.raises(RuntimeError, match="not from the columnar copies"):
        loading._run_checked("sagellm_first", run)
    assert not loading._worker("sagellm_seal", run).get("failed")
    sealed = sorted(p.name for p in (run / COLUMNAR_DIR).iterdir())
    # A rebuild puts the store's copies back: later first loads still read what the store wrote.
    rebuilt = loading._run_checked("sagellm_rebuild", run)
    assert rebuilt["rebuilt_files"] == 1
    assert sorted(p.name for p in (run / COLUMNAR_DIR).iterdir()) == sealed
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []
    assert loading._run_checked("sagellm_first", run)["rows"] == 400


def test_loading_big_skips_and_kills_what_does_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import loading

    # The toy "big" size (4,000 spans) stands for 10M: read_ndjson and pandas are skipped there,
    # and a loader past the memory limit is killed and reported, not left to the OOM killer.
    monkeypatch.setattr(loading, "NDJSON_MAX_SPANS", 3_000)
    monkeypatch.setattr(loading, "PANDAS_MAX_SPANS", 3_000)
    assert 0 < loading.MEMORY_SHARE < 1
    loading.run(Options(preset="toy", out_dir=tmp_path, show_progress=False, big=True))
    doc = json.loads((tmp_path / "loading.json").read_text())
    small, big = doc["results"]["sizes"].values()
    assert "polars_ndjson" in small["loaders"] and "polars_ndjson" not in big["loaders"]
    assert not big["first_over_ndjson_runs"]
    text = loading.render(doc)
    assert "read_ndjson not run at this size" in text and "| not run |" in text

    monkeypatch.setattr(loading, "MEMORY_SHARE", 1e-6)  # every process is over the limit
    failed = loading._worker("imports", tmp_path)
    assert "killed at" in failed["failed"]


def test_charts(tmp_path: Path) -> None:
    doc = _run_in_process("charts", tmp_path)
    results = doc["results"]
    assert isinstance(results, dict)
    assert all(c["bytes"] > 0 for c in results["charts"].values())
    _renders("charts", doc, tmp_path)


def test_clickhouse(tmp_path: Path) -> None:
    """chdb holds one database folder per process: the benchmark runs in its own."""
    doc = _run_subprocess("clickhouse", tmp_path)
    results = doc["results"]
    assert isinstance(results, dict)
    assert results["same_figures"] is True  # chdb and Polars computed the same figures
    assert results["chdb_rows"] == results["store"]["spans"] == results["spans"]
    assert results["windows"] > 0 and results["models"] == 1
    _renders("clickhouse", doc, tmp_path)
    (row,) = module("clickhouse").headline(doc)
    assert row[-1] == "— (10M not run)"


@pytest.mark.engine
def test_engine_overhead(tmp_path: Path) -> None:
    doc = _run_subprocess("engine_overhead", tmp_path)
    results = doc["results"]
    assert isinstance(results, dict)
    summary = results[results["primary"]]
    assert set(summary["modes"]) == {
        "vllm",
        "vllm_final",
        "ours",
        "ours_stream",
        "ours_stream_no_tel",
        "vllm_tracing",
        "ours_live",
        "vllm_kv",
        "ours_kv_events",
    }
    assert set(summary["vs_base"]) == {"ours_live", "ours_kv_events"}
    # What asks vLLM for FINAL_ONLY outputs is compared with vLLM asked for the same.
    bases = {m: c["base"] for m, c in summary["vs_vllm"].items()}
    assert bases == {
        "vllm_final": "vllm",
        "ours": "vllm_final",
        "ours_stream": "vllm",
        "ours_stream_no_tel": "vllm",
        "vllm_tracing": "vllm",
        "ours_live": "vllm_final",
        "vllm_kv": "vllm_final",
        "ours_kv_events": "vllm_final",
    }
    assert math.isnan(summary["modes"]["vllm_final"]["ttft_ms"]["p50"])  # no token before the end
    assert results["telemetry"]["requests_recorded"] > 0
    assert results["vllm_tracing_export_requests"] > 0
    # The live view refreshed and sent its charts; the second engine's KV events were recorded.
    assert results["live_view"]["refreshes"] > 0 and results["live_view"]["widget_bytes"] > 0
    kv = results["kv_events"]
    assert kv["records"] > 0 and kv["by_kind"]["stored"] > 0 and kv["dropped_batches"] == 0
    _renders("engine_overhead", doc, tmp_path)
    text = module("engine_overhead").render(doc)
    assert "| L / B |" in text and "| B_kv / A_kv |" in text and "| B / A_final |" in text
    assert "B (`ours`) / A_final (vLLM)" in " ".join(
        row[0] for row in module("engine_overhead").headline(doc)
    )


@pytest.mark.engine
def test_engine_overhead_small(tmp_path: Path) -> None:
    """The heavier-model variant: same benchmark, the offline ``small`` model, its own file."""
    doc = _run_subprocess("engine_overhead_small", tmp_path)
    assert doc["params"]["model"] == "small"  # type: ignore[index]
    results = doc["results"]
    assert isinstance(results, dict)
    assert results["telemetry"]["requests_recorded"] > 0
    assert len(results[results["primary"]]["modes"]) == 6  # one engine, no live view
    assert "`small` model" in module("engine_overhead_small").render(doc)
    _renders("engine_overhead_small", doc, tmp_path)


@pytest.mark.engine
@pytest.mark.slow
def test_server(tmp_path: Path) -> None:
    doc = _run_subprocess("server", tmp_path)
    results = doc["results"]
    assert isinstance(results, dict)
    if "skipped" not in results:
        servers = results[results["primary"]]["servers"]
        assert servers["ours"]["errors"] == 0
        assert servers["vllm"]["errors"] == 0
    _renders("server", doc, tmp_path)


def test_every_benchmark_has_a_smoke_test() -> None:
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert set(BENCHMARKS) <= tested


def test_docs_keep_the_figures_of_benchmarks_without_a_result_here(tmp_path: Path) -> None:
    """Result files are not committed: rerunning one benchmark must not erase the others'."""
    page = tmp_path / "benchmarks.md"
    page.write_text(
        "\n".join(
            [
                "# B",
                docs.begin("summary"),
                "| benchmark | measure | target | measured | met |",
                "|---|---|---|---|---|",
                "| [loading](#loading) | cold | ≤ 3 s | 8 s | **no** |",
                "| [server](#server) | old server row | — | 1.0 | — |",
                docs.end("summary"),
                docs.begin("machine"),
                "| results | loading (2026-01-01T00:00:00), server (2026-01-02T00:00:00) |",
                docs.end("machine"),
                docs.begin("server"),
                "old",
                docs.end("server"),
                "",
            ]
        )
    )
    out = tmp_path / "results"
    out.mkdir()
    doc = {
        "benchmark": "server",
        "finished_at": "2026-02-02T00:00:00",
        "git": "abc",
        "machine": {
            "cpu_model": "cpu",
            "nproc": 2,
            "memory_gib": 1.0,
            "os": "os",
            "python": "3",
        },
        "versions": {},
    }
    (out / "server.json").write_text(json.dumps(doc))
    docs.update(
        page,
        out,
        {"loading": lambda d: "L", "server": lambda d: "S"},
        {},
        {"server": lambda d: [["new server row", "≥ 0.98", "0.99", "yes"]]},
    )
    text = page.read_text()
    assert "| [loading](#loading) | cold | ≤ 3 s | 8 s | **no** |" in text
    assert "new server row" in text and "old server row" not in text
    assert text.index("[loading]") < text.index("new server row")
    assert "loading (2026-01-01T00:00:00), server (2026-02-02T00:00:00)" in text
    assert "\nS\n" in text and "\nold\n" not in text
