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
        assert metric.buckets == tuple(sorted(set(metric.buckets or ()))), metric.name
    assert f"`{sc.tool_span_name('{gen_ai.tool.name}')}`" in DOC


def test_http_span_names_are_documented() -> None:
    for key, meaning in sc.HTTP_ATTRIBUTE_DOCS.items():
        assert f"| `{key}` | {meaning} |" in DOC, key
    assert f"`{sc.TRACE_ID_HEADER}`" in DOC
