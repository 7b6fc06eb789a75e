"""One check on vLLM's default multi-process layout (EngineCore and worker in their own processes),
which is what users run: the monotonic clocks of other processes convert correctly."""

from __future__ import annotations

import pytest
from engine_harness import SHARED_PREFIX
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from sagellm_obs import AdvancedOptions, configure
from sagellm_obs import semconv as sc
from sagellm_obs.engine import Engine

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def test_multiprocess_engine_spans_and_clock(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clocks, and vLLM's settings cached in this process (the frontend's) while it runs."""
    import vllm.envs

    from sagellm_obs.engine import vllm_env

    monkeypatch.delenv("VLLM_COMPUTE_NANS_IN_LOGITS", raising=False)
    monkeypatch.delenv("VLLM_RAISE_ON_LOGIT_NANS", raising=False)
    held = vllm_env.holders()
    spans = InMemorySpanExporter()
    tel = configure(
        run_dir=False,
        otlp_endpoint=False,
        make_current=False,
        advanced=AdvancedOptions(span_exporters=[spans], simple_processors=True),
    )
    engine = Engine("tiny", telemetry=tel, in_process=False, kv_cache_memory_bytes=64 * 2**20)
    try:
        # vLLM's frontend reads this setting once per request per step: cached now, a change
        # made after the start is not seen (vLLM's rule for its cache) until the next start.
        monkeypatch.setenv("VLLM_COMPUTE_NANS_IN_LOGITS", "1")
        assert vllm_env.cached() and vllm_env.holders() == held + 1
        assert vllm.envs.VLLM_COMPUTE_NANS_IN_LOGITS is False
        resps = engine.generate_batch(
            [
                {
                    "request_id": f"mp-{i}",
                    "trace_id": f"mp-{i}",
                    "prompt": SHARED_PREFIX + str(i),
                    "max_tokens": 6,
                    "metadata": {"ignore_eos": True},
                }
                for i in range(3)
            ]
        )
        tel.flush()
    finally:
        engine.close()
        tel.shutdown()
    assert vllm_env.holders() == held
    if not held:  # the last hold released: vLLM reads the environment again
        assert not vllm_env.cached() and vllm.envs.VLLM_COMPUTE_NANS_IN_LOGITS is True
    assert all(len(r.output_tokens) == 6 for r in resps)
    server = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert len(server) == 3
    for span in server:
        kids = sorted(
            (
                s
                for s in spans.get_finished_spans()
                if s.parent and s.parent.span_id == span.context.span_id
            ),
            key=lambda s: s.start_time,
        )
        assert [k.name for k in kids] == list(sc.PHASE_SPANS)
        # EngineCore's monotonic stamps, converted in this process, land inside the request span.
        assert span.start_time <= kids[0].start_time
        assert kids[-1].end_time <= span.end_time
        assert sc.SAGELLM_CLOCK_ISSUES not in (span.attributes or {})
    for r in resps:
        ts = r.metrics.timestamps
        assert ts is not None
        assert ts.queued_at <= ts.scheduled_at <= ts.executed_at <= ts.completed_at
