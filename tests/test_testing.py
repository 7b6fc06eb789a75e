"""The public test helpers: ``sagellm_obs.testing`` (record builders, the capture fixture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
    assert sum(p.count for p in ttft.data.data_points) == 2
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
