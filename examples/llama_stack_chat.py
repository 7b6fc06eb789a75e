"""Talk to the instrumented engine with llama-stack's own client (llama-stack-client 0.2.x).

Run: .venv/bin/python examples/llama_stack_chat.py
"""

from __future__ import annotations

from llama_stack_client import LlamaStackClient

import sagellm_obs as so
from sagellm_obs.engine import EngineConfig
from sagellm_obs.server import BackgroundServer


def main() -> None:
    telemetry = so.configure(runs_root="sagellm-runs")
    with BackgroundServer(EngineConfig(in_process=True), telemetry=telemetry) as server:
        client = LlamaStackClient(base_url=server.url)
        model = client.models.list()[0].identifier
        stream = client.inference.chat_completion(
            model_id=model,
            messages=[{"role": "user", "content": "Write a haiku about caches."}],
            sampling_params={"max_tokens": 16},
            stream=True,
        )
        for chunk in stream:
            event = chunk.event
            if event.delta.type == "text":
                print(event.delta.text, end="", flush=True)
            if event.event_type == "complete":
                metrics = {m.metric: (m.value, m.unit) for m in chunk.metrics or ()}
                ttft, unit = metrics["time_to_first_token"]
                print(f"\nstop: {event.stop_reason}, TTFT {ttft:.1f} {unit}, tokens:",
                      {k: int(v) for k, (v, u) in metrics.items() if u == "tokens"})  # fmt: skip
        batch = client.inference.batch_completion(
            model_id=model,
            content_batch=["def f(x):", "import os\n"],
            sampling_params={"max_tokens": 8},
        )
        print([item.stop_reason for item in batch.batch])
    so.shutdown()


if __name__ == "__main__":
    main()
