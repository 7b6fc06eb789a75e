"""docs/semconv.md names every attribute, metric and step key defined in semconv.py."""

from __future__ import annotations

from pathlib import Path

from sagellm_obs import semconv as sc

DOC = (Path(__file__).parents[1] / "docs" / "semconv.md").read_text()


def test_every_attribute_and_metric_is_documented() -> None:
    for key in sc.ATTRIBUTE_DOCS:
        assert f"`{key}`" in DOC, key
    for metric in sc.METRICS:
        assert f"`{metric.name}`" in DOC, metric.name
        assert f"`{metric.prometheus_name}`" in DOC, metric.prometheus_name


def test_every_step_key_is_documented() -> None:
    keys = [v for k, v in vars(sc).items() if k.startswith("STEP_") and isinstance(v, str)]
    for key in keys:
        assert f"`{key}`" in DOC, key


def test_histograms_have_sorted_buckets() -> None:
    for metric in sc.METRICS:
        if metric.kind == "histogram":
            assert metric.buckets, metric.name
            assert list(metric.buckets) == sorted(set(metric.buckets)), metric.name


def test_application_side_names_are_documented() -> None:
    for key in sc.APP_ATTRIBUTE_DOCS:
        assert f"`{key}`" in DOC, key
    for metric in sc.CLIENT_METRICS:
        assert f"`{metric.name}`" in DOC, metric.name
        assert f"`{metric.prometheus_name}`" in DOC, metric.prometheus_name
        if metric.kind == "histogram":
            assert metric.buckets == tuple(sorted(set(metric.buckets or ()))), metric.name
    assert f"`{sc.tool_span_name('{gen_ai.tool.name}')}`" in DOC


def test_http_span_names_are_documented() -> None:
    for key, meaning in sc.HTTP_ATTRIBUTE_DOCS.items():
        assert f"| `{key}` | {meaning} |" in DOC, key
    assert f"`{sc.TRACE_ID_HEADER}`" in DOC


def test_every_metric_row_says_which_convention_it_follows() -> None:
    for metric in (*sc.METRICS, *sc.CLIENT_METRICS):
        rows = [
            line
            for line in DOC.splitlines()
            if line.startswith(f"| `{metric.name}` | {metric.kind} |")
        ]
        assert len(rows) == 1, metric.name
        assert f"| {metric.source} |" in rows[0], metric.name
        assert f"`{metric.collector_prometheus_name}`" in rows[0], metric.name


def test_the_semconv_switch_is_documented() -> None:
    assert f"`{sc.ENV_SEMCONV_OPT_IN}`" in DOC
    for value, mode in sc.SEMCONV_OPT_IN_VALUES.items():
        assert f"`{value}`" in DOC and f'`"{mode}"`' in DOC, value
    for old, new in (
        (
            sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_LEGACY,
            sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
        ),
        (sc.M_CLIENT_TOKEN_USAGE.name, sc.M_CLIENT_OPERATION_INPUT_TOKENS.name),
        (sc.M_CLIENT_OPERATION_DURATION.name, sc.M_CLIENT_INFERENCE_DURATION.name),
        (sc.M_TOKEN_USAGE.name, sc.M_REQUEST_INPUT_TOKENS.name),
    ):
        assert f"`{old}`" in DOC and f"`{new}`" in DOC


def test_the_mode_is_read_like_otel_semconv_stability_opt_in() -> None:
    mode = sc.genai_semconv_mode
    assert mode("") == sc.SEMCONV_LATEST  # the default: current names
    assert mode("http,database/dup") == sc.SEMCONV_LATEST
    assert mode("gen_ai_latest_experimental") == sc.SEMCONV_LATEST
    assert mode(" http , gen_ai_latest_experimental/dup") == sc.SEMCONV_DUP
    assert mode("gen_ai_legacy") == sc.SEMCONV_LEGACY
    assert mode("gen_ai_legacy,gen_ai_latest_experimental") == sc.SEMCONV_DUP
    assert mode("legacy") == sc.SEMCONV_LEGACY  # configure(genai_semconv=...) spelling
    assert sc.emits_latest(sc.SEMCONV_DUP) and sc.emits_legacy(sc.SEMCONV_DUP)
    assert not sc.emits_legacy(sc.SEMCONV_LATEST) and not sc.emits_latest(sc.SEMCONV_LEGACY)
