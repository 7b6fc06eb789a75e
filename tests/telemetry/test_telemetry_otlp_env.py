"""Which OTLP exporters configure() builds, from arguments and OTEL_EXPORTER_OTLP_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetrics,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetrics,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace.export import SpanExporter

from sagellm_obs.telemetry import configure
from sagellm_obs.telemetry.exporting import CountingSpanExporter, otlp_exporters

ENDPOINT = "http://127.0.0.1:9"  # discard port: nothing is sent in these tests


def _close(spans: list[SpanExporter], metrics: list[MetricExporter]) -> None:
    for e in spans:
        e.shutdown()
    for m in metrics:
        m.shutdown()


def _types(spans: list[SpanExporter], metrics: list[MetricExporter]) -> tuple[list[type], ...]:
    return [type(e) for e in spans], [type(m) for m in metrics]


def test_no_environment_means_no_otlp() -> None:
    assert otlp_exporters(None, None, None) == ([], [])
    assert otlp_exporters(None, "grpc", {"a": "b"}) == ([], [])


def test_configure_without_environment_has_no_otlp(tmp_path: Path) -> None:
    tel = configure(run_dir=tmp_path, make_current=False)
    try:
        assert tel.otlp == []
        assert tel.stats()["otlp_spans_exported"] == 0
    finally:
        tel.shutdown()


def test_endpoint_variable_turns_http_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    spans, metrics = otlp_exporters(None, None, None)
    try:
        assert _types(spans, metrics) == ([HttpSpans], [HttpMetrics])
        # The SDK appends the signal paths to the generic endpoint itself.
        assert spans[0]._endpoint == f"{ENDPOINT}/v1/traces"  # type: ignore[attr-defined]
        assert metrics[0]._endpoint == f"{ENDPOINT}/v1/metrics"  # type: ignore[attr-defined]
    finally:
        _close(spans, metrics)


def test_traces_only_variable_turns_on_traces_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{ENDPOINT}/custom/traces")
    spans, metrics = otlp_exporters(None, None, None)
    try:
        assert _types(spans, metrics) == ([HttpSpans], [])
        assert spans[0]._endpoint == f"{ENDPOINT}/custom/traces"  # type: ignore[attr-defined]
    finally:
        _close(spans, metrics)


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"]
)
def test_grpc_protocol_from_environment(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    monkeypatch.setenv(variable, "grpc")
    spans, metrics = otlp_exporters(None, None, None)
    try:
        assert _types(spans, metrics) == ([GrpcSpans], [GrpcMetrics])
    finally:
        _close(spans, metrics)


def test_argument_protocol_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    spans, metrics = otlp_exporters(ENDPOINT, "http/protobuf", None)
    try:
        assert _types(spans, metrics) == ([HttpSpans], [HttpMetrics])
        assert spans[0]._endpoint == f"{ENDPOINT}/v1/traces"  # type: ignore[attr-defined]
    finally:
        _close(spans, metrics)


def test_explicit_endpoint_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    spans, metrics = otlp_exporters(ENDPOINT + "/", "grpc", None)
    try:
        assert _types(spans, metrics) == ([GrpcSpans], [GrpcMetrics])
        assert spans[0]._endpoint == "127.0.0.1:9"  # type: ignore[attr-defined]
        assert spans[0]._insecure is True  # type: ignore[attr-defined]
    finally:
        _close(spans, metrics)
    spans, metrics = otlp_exporters(ENDPOINT + "/", None, None)
    try:
        assert spans[0]._endpoint == f"{ENDPOINT}/v1/traces"  # type: ignore[attr-defined]
    finally:
        _close(spans, metrics)


def test_grpc_endpoint_without_scheme_honours_insecure_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``collector:4317`` is the usual way to write a gRPC endpoint; TLS then follows the env."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    spans, metrics = otlp_exporters("127.0.0.1:9", "grpc", None)
    try:
        assert spans[0]._insecure is True  # type: ignore[attr-defined]
        assert metrics[0]._insecure is True  # type: ignore[attr-defined]
    finally:
        _close(spans, metrics)
    spans, metrics = otlp_exporters("https://127.0.0.1:9", "grpc", None)
    try:
        assert spans[0]._insecure is False  # type: ignore[attr-defined]
    finally:
        _close(spans, metrics)


def test_false_endpoint_overrides_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert otlp_exporters(False, None, None) == ([], [])
    tel = configure(run_dir=tmp_path, otlp_endpoint=False, make_current=False)
    try:
        assert tel.otlp == []
    finally:
        tel.shutdown()


@pytest.mark.parametrize("protocol", ["http/json", "thrift", "GRPC", ""])
def test_bad_protocol_argument_is_a_value_error(protocol: str) -> None:
    if protocol == "":
        # An empty argument falls back to the default, as an unset one does.
        spans, metrics = otlp_exporters(ENDPOINT, protocol, None)
        assert _types(spans, metrics) == ([HttpSpans], [HttpMetrics])
        _close(spans, metrics)
        return
    with pytest.raises(ValueError, match="unsupported OTLP protocol"):
        otlp_exporters(ENDPOINT, protocol, None)


def test_bad_protocol_from_environment_is_a_value_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
    with pytest.raises(ValueError, match="carrier-pigeon"):
        otlp_exporters(None, None, None)
    with pytest.raises(ValueError, match="carrier-pigeon"):
        configure(run_dir=tmp_path, make_current=False)


def test_headers_reach_the_exporters() -> None:
    spans, metrics = otlp_exporters(ENDPOINT, "http/protobuf", {"authorization": "Bearer s3cret"})
    try:
        assert spans[0]._client._headers["authorization"] == "Bearer s3cret"  # type: ignore[attr-defined]
    finally:
        _close(spans, metrics)


def test_configure_wraps_otlp_exporters_and_keeps_secrets_out_of_the_manifest(
    tmp_path: Path,
) -> None:
    tel = configure(
        run_dir=tmp_path,
        otlp_endpoint=ENDPOINT,
        otlp_protocol="http/protobuf",
        otlp_headers={"authorization": "Bearer s3cret"},
        make_current=False,
    )
    try:
        assert [type(e) for e in tel.otlp] == [CountingSpanExporter]
        assert isinstance(tel.otlp[0].inner, HttpSpans)
        manifest = (tmp_path / "manifest.json").read_text()
        assert "s3cret" not in manifest
        assert f"{ENDPOINT}/v1/traces" in manifest
    finally:
        tel.shutdown()
