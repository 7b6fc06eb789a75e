"""Join the engine's spans to your application's trace with a W3C traceparent.

Run: .venv/bin/python examples/trace_context.py
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import sagellm_obs as so
from sagellm_obs.protocol import Request, TraceParent


def main() -> None:
    app_tracer = TracerProvider().get_tracer("my-app")
    so.configure(runs_root="sagellm-runs")
    with so.Engine("tiny", in_process=True) as engine, app_tracer.start_as_current_span("answer"):
        ctx = trace.get_current_span().get_span_context()
        parent = TraceParent.from_ints(ctx.trace_id, ctx.span_id)
        request = Request(
            request_id="ctx-1",
            trace_id="ctx-1",
            prompt="import json\n",
            max_tokens=8,
            metadata={"traceparent": str(parent)},
        )
        for event in engine.stream(
            request, on_token=lambda d: print(d.content, end="", flush=True)
        ):
            if event.event == "end":
                print(f"\nTTFT {event.metrics.ttft_ms:.1f} ms, ITL {event.metrics.itl_list}")
        print(f"the engine span is in trace {parent.trace_id}, child of span {parent.span_id}")
    so.shutdown()


if __name__ == "__main__":
    main()
