"""Generate with the instrumented engine, then look at the numbers and the run folder.

Run: .venv/bin/python examples/quickstart.py
"""

from __future__ import annotations

import sagellm_obs as so
from sagellm_obs.frames import load
from sagellm_obs.protocol import Request


def main() -> None:
    telemetry = so.configure(runs_root="sagellm-runs")
    with so.Engine("tiny", in_process=True) as engine:
        prefix = "You are a terse assistant for Python questions. " * 20
        requests = [
            Request(request_id=f"q{i}", trace_id=f"demo-{i}", prompt=f"{prefix}Q{i}", max_tokens=16)
            for i in range(8)
        ]
        for resp in engine.generate_batch(requests):
            m = resp.metrics
            print(
                f"{resp.request_id}: TTFT {m.ttft_ms:6.1f} ms  TPOT {m.tpot_ms:5.1f} ms  "
                f"prefix hit {m.prefix_hit_rate:4.0%}  KV {m.kv_used_bytes / 2**10:.0f} KiB"
            )
    telemetry.shutdown()  # flush everything to the run folder
    assert telemetry.run_dir is not None
    frames = load(telemetry.run_dir)
    print(frames.requests.select("request_id", "ttft_s", "queue_s", "prefill_s", "decode_s"))
    print(f"run folder: {telemetry.run_dir}")


if __name__ == "__main__":  # vLLM starts its engine process with "spawn"
    main()
