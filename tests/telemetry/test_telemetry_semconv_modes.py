"""The GenAI naming switch: current names by default, the previous ones (or both) on request."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sagellm_obs import AdvancedOptions, configure
from sagellm_obs import semconv as sc
from sagellm_obs.app.genai import ClientOperation
from sagellm_obs.app.providers import Providers
from sagellm_obs.testing import make_record


def _run(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, opt_in: str | None, arg: str | None = None
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """One configure(): an engine request, a client call with usage and a failed one; returns
    (metric name -> points, client span attributes, the telemetry)."""
    if opt_in is not None:
        monkeypatch.setenv(sc.ENV_SEMCONV_OPT_IN, opt_in)
    reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
    tel = configure(
        run_dir=tmp_path / "run",
        otlp_endpoint=False,
        genai_semconv=arg,
        make_current=False,
        advanced=AdvancedOptions(
            metric_readers=[reader], span_exporters=[spans], simple_processors=True
        ),
    )
    try:
        tel.submit_request(make_record(tel.anchor, 1))
        assert tel.pipeline.flush(10)
        providers = Providers(telemetry=tel)
        op = ClientOperation(
            providers, operation="chat", model="m", provider_name="openai", stream=True
        )
        op.chunk()
        op.chunk()
        op.usage(12, 5, cached=4, cache_write=3, reasoning=2)
        op.end()
        failed = ClientOperation(providers, operation="chat", model="m", provider_name="openai")
        failed.fail(TimeoutError("slow"))
        data = reader.get_metrics_data()
        points: dict[str, Any] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    points.setdefault(m.name, []).extend(m.data.data_points)
        client = next(s for s in spans.get_finished_spans() if s.name == "chat m")
        return points, dict(client.attributes or {}), tel
    finally:
        tel.shutdown()


LATEST = {m.name for m in (*sc.LATEST_METRICS, *sc.CLIENT_METRICS_LATEST)}
LEGACY = {m.name for m in (*sc.LEGACY_METRICS, *sc.CLIENT_METRICS_LEGACY)}


def test_default_is_the_current_conventions(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sc.ENV_SEMCONV_OPT_IN, raising=False)
    points, attrs, tel = _run(tmp_path, monkeypatch, None)
    assert tel.genai_semconv == sc.SEMCONV_LATEST
    assert set(points) >= LATEST and not LEGACY & set(points)
    assert attrs[sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] == 3
    assert sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_LEGACY not in attrs
    # per-operation histograms: the successful call only; counters: both, the failed one adding
    # 0 under the "unknown" modality (gen-ai-token-metrics.md)
    (hist,) = points[sc.M_CLIENT_OPERATION_INPUT_TOKENS.name]
    assert (hist.count, hist.sum) == (1, 12)
    spent = {
        (p.attributes.get(sc.ERROR_TYPE), p.attributes[sc.GEN_AI_TOKEN_MODALITY]): p.value
        for p in points[sc.M_CLIENT_USAGE_INPUT_TOKENS.name]
    }
    assert spent == {(None, sc.TOKEN_MODALITY_UNKNOWN): 12}  # 12 + 0, one series
    assert points[sc.M_CLIENT_USAGE_CACHE_READ_INPUT_TOKENS.name][0].value == 4
    assert points[sc.M_CLIENT_USAGE_CACHE_WRITE_INPUT_TOKENS.name][0].value == 3
    assert points[sc.M_CLIENT_USAGE_REASONING_OUTPUT_TOKENS.name][0].value == 2
    durations = points[sc.M_CLIENT_INFERENCE_DURATION.name]
    assert {p.attributes.get(sc.ERROR_TYPE) for p in durations} == {None, "TimeoutError"}
    manifest = (tel.run_dir / "manifest.json").read_text()
    assert '"genai_semconv": "latest"' in manifest


def test_legacy_names_behind_the_switch(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    points, attrs, tel = _run(tmp_path, monkeypatch, "http,gen_ai_legacy")
    assert tel.genai_semconv == sc.SEMCONV_LEGACY
    assert set(points) >= LEGACY and not LATEST & set(points)
    assert attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_LEGACY] == 3
    assert sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS not in attrs
    by_type = {
        p.attributes[sc.GEN_AI_TOKEN_TYPE]: p.sum for p in points[sc.M_CLIENT_TOKEN_USAGE.name]
    }
    assert by_type == {"input": 12, "output": 5}


def test_dup_emits_both_and_the_argument_wins(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    points, attrs, tel = _run(tmp_path, monkeypatch, "gen_ai_latest_experimental/dup")
    assert tel.genai_semconv == sc.SEMCONV_DUP
    assert set(points) >= (LATEST | LEGACY)
    assert attrs[sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] == 3
    assert attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_LEGACY] == 3
    # the engine's token histograms agree with each other
    new_in = points[sc.M_REQUEST_INPUT_TOKENS.name][0].sum
    old_in = [
        p.sum
        for p in points[sc.M_TOKEN_USAGE.name]
        if p.attributes[sc.GEN_AI_TOKEN_TYPE] == "input"
    ]
    assert [new_in] == old_in
    points, _, tel = _run(tmp_path / "b", monkeypatch, "gen_ai_latest_experimental/dup", "latest")
    assert tel.genai_semconv == sc.SEMCONV_LATEST and not LEGACY & set(points)


def test_an_unknown_mode_is_an_error(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="genai_semconv"):
        configure(run_dir=False, otlp_endpoint=False, genai_semconv="newest", make_current=False)
