"""Spans and metrics through a real OTLP collector (rotel), compared with the local store.

rotel-agent receives OTLP over gRPC and HTTP on free ports and forwards everything over OTLP/HTTP
to a receiver in this process, which parses the protobuf bodies: what arrives must be exactly what
the local store holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sagellm_obs import semconv as sc
from sagellm_obs.store import files_of, iter_jsonl
from sagellm_obs.store.otlp_json import parse_metrics_line, parse_traces_line
from sagellm_obs.telemetry import AdvancedOptions, RequestRecord, configure

PARENT_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_SPAN_ID = 0x00F067AA0BA902B7


def _store_spans(run: Path) -> dict[int, tuple[Any, Any]]:
    out: dict[int, tuple[Any, Any]] = {}
    for f in files_of(run, "traces"):
        for _, obj in iter_jsonl(f):
            for rs in parse_traces_line(obj).resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        out[int.from_bytes(span.span_id, "big")] = (span, rs.resource)
    return out


def _kv(attributes: Any) -> dict[str, Any]:
    return {kv.key: kv.value for kv in attributes}


def _key(point: Any) -> str:
    return json.dumps(sorted((kv.key, str(kv.value)) for kv in point.attributes))


def _histogram_points(requests: list[Any], name: str, run_id: str) -> list[Any]:
    points = []
    for req in requests:
        for rm in req.resource_metrics:
            if _kv(rm.resource.attributes)[sc.RESOURCE_RUN_ID].string_value != run_id:
                continue
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        points.extend(m.histogram.data_points)
    return points


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_spans_arrive_intact_through_rotel(
    rotel: Any,
    otlp_receiver: Any,
    tmp_path: Path,
    records: Callable[..., RequestRecord],
    protocol: str,
) -> None:
    endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
    tel = configure(
        run_dir=tmp_path / "run",
        service_name=f"collector-test-{protocol}",
        engine_id="engine-collector",
        otlp_endpoint=endpoint,
        otlp_protocol=protocol,  # type: ignore[arg-type]
        advanced=AdvancedOptions(span_batch_delay=0.05, metric_export_interval=3600),
        make_current=False,
    )
    try:
        anchor = tel.anchor
        recs = [records(anchor, i, prompt_token_ids=list(range(300))) for i in range(4)]
        recs.append(
            records(
                anchor,
                4,
                otel_trace_id=PARENT_TRACE_ID,
                parent_span_id=PARENT_SPAN_ID,
                tracestate="vendor=abc",
            )
        )
        recs.append(records(anchor, 5, error_type="EngineDeadError", finish_reason="error"))
        recs.append(records(anchor, 6, input_messages='[{"role":"user","content":"hé ✓"}]'))
        for r in recs:
            tel.submit_request(r)
        assert tel.flush(timeout=20)
        assert tel.run_dir is not None
        local = _store_spans(tel.run_dir)
        assert len(local) == 4 * len(recs)
        stats = tel.stats()
        assert stats["otlp_spans_exported"] == len(local)
        assert stats["otlp_spans_failed"] == 0

        received = otlp_receiver.received
        arrived = received.wait_for(lambda: set(local) <= set(received.spans()), timeout=15)
        got = received.spans()
        assert arrived, f"{len(set(local) - set(got))} of {len(local)} spans never arrived"
        for span_id, (stored, stored_resource) in local.items():
            remote, remote_resource = got[span_id]
            assert remote.name == stored.name
            assert _kv(remote.attributes) == _kv(stored.attributes), stored.name
            # The whole span, field by field; only the W3C trace-flag bits differ, because the
            # SDK's OTLP exporter leaves them out of Span.flags while the store writes them.
            assert remote.flags == stored.flags & ~0xFF
            stored.flags = remote.flags
            assert remote == stored
            assert _kv(remote_resource.attributes) == _kv(stored_resource.attributes)
        names = {s.name for s, _ in local.values()}
        assert names == {"text_completion tiny-model", *sc.PHASE_SPANS}

        # Metrics: the collector got the same histogram the store holds.
        run_id = tel.store.run_id  # type: ignore[union-attr]
        name = sc.M_REQUEST_DURATION.name
        assert received.wait_for(
            lambda: (
                sum(p.count for p in _histogram_points(received.metrics, name, run_id)) >= len(recs)
            ),
            timeout=15,
        )
        remote_points = _histogram_points(received.metrics, name, run_id)
        store_lines = [
            parse_metrics_line(obj)
            for f in files_of(tel.run_dir, "metrics")
            for _, obj in iter_jsonl(f)
        ]
        local_points = _histogram_points(store_lines, name, run_id)
        assert sum(p.count for p in local_points) == len(recs)
        remote_by_attrs = {_key(p): list(p.bucket_counts) for p in remote_points}
        assert remote_by_attrs == {_key(p): list(p.bucket_counts) for p in local_points}
    finally:
        tel.shutdown()
    assert "Received traces" in rotel.log.read_text(errors="replace")
