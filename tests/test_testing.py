"""The public test helpers: ``sagellm_obs.testing`` (record builders, the capture fixture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opentelemetry.sdk.metrics.export import HistogramDataPoint

from sagellm_obs import semconv as sc
from sagellm_obs.testing import Capture, make_record


def test_capture_holds_spans_metrics_and_steps(sagellm_capture: Capture) -> None:
    sagellm_capture.submit(
        make_record(sagellm_capture.anchor, 0), make_record(sagellm_capture.anchor, 1)
    )
    sagellm_capture.submit_step(
        {
            sc.STEP_TIME_UNIX_NANO: 1_700_000_000 * 10**9,
            sc.STEP_ENGINE_ID: "engine-test",
            sc.STEP_INDEX: 0,
            sc.STEP_RUNNING: 2,
            sc.STEP_WAITING: 0,
            sc.STEP_KV_USAGE: 0.25,
            sc.STEP_PREFIX_QUERIES: 10,
            sc.STEP_PREFIX_HITS: 4,
            sc.STEP_PROMPT_TOKENS: 10,
            sc.STEP_CACHED_PROMPT_TOKENS: 4,
            sc.STEP_GENERATION_TOKENS: 2,
            sc.STEP_PREEMPTIONS: 0,
            sc.STEP_FINISHED: 0,
        }
    )
    names = [s.name for s in sagellm_capture.spans()]
    assert names.count("queue") == 2
    requests = [s for s in sagellm_capture.spans() if s.parent is None]
    assert len(requests) == 2
    assert sagellm_capture.spans(name="queue")[0].parent is not None
    assert "gen_ai.server.time_to_first_token" in sagellm_capture.metric_names()
    (ttft,) = sagellm_capture.metrics("gen_ai.server.time_to_first_token")
    hist = [p for p in ttft.data.data_points if isinstance(p, HistogramDataPoint)]
    assert len(hist) == len(ttft.data.data_points)
    assert sum(p.count for p in hist) == 2
    (step,) = sagellm_capture.steps()
    assert step[sc.STEP_PREFIX_HITS] == 4


def test_importing_testing_loads_no_heavy_module() -> None:
    code = "import json, sys\nimport sagellm_obs.testing\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not loaded & {"vllm", "torch", "altair", "ipywidgets"}


def test_synthetic_run_is_a_real_run_folder(tmp_path: Path) -> None:
    from sagellm_obs.frames import load
    from sagellm_obs.testing import synthetic_run

    run = synthetic_run(
        tmp_path / "run",
        6,
        engines=("e1", "e2"),
        prefix="x",
        cancelled=frozenset({1}),
        failed=frozenset({4}),
    )
    frames = load(run)
    req = frames.requests.sort("request_id")
    assert req["request_id"].to_list() == [f"x-{i:03d}" for i in range(6)]
    assert req["engine_id"].to_list() == ["e1", "e2"] * 3
    assert req["cancelled"].to_list() == [False, True, False, False, False, False]
    assert req["error_type"].to_list()[4] == "EngineDeadError"
    # The stored phases add up to the stored E2E minus the 0.5 ms before the engine queue.
    parts = req["queue_s"] + req["prefill_s"] + req["decode_s"]
    assert ((req["e2e_s"] - parts - 0.0005).abs() < 1e-6).all()
    assert frames.steps.height == int((0.2 * 6 + 1.0) / 0.1)
    empty = synthetic_run(tmp_path / "empty", 0, steps=False)
    assert load(empty).requests.height == 0 and load(empty).steps.height == 0
