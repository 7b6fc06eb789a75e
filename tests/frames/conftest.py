"""Fixtures for the frames tests: a run folder written by the real telemetry writer."""

from __future__ import annotations

import pytest
from frames_otlp import WrittenRun, write_run

from sagellm_obs.frames import Frames, load

# Two flushes: metrics lines after 3 and after 5 finished requests (and one more at shutdown).
BATCHES = (
    (
        {"i": 0},
        {"i": 1, "queue": 0.05, "prefill": 0.2, "decode": 0.9, "output_tokens": 31},
        {"i": 2, "error_type": "timeout", "finish_reason": "error", "error_code": "TIMEOUT"},
    ),
    (
        {"i": 3, "cancelled": True, "finish_reason": "abort", "output_tokens": 1},
        {"i": 4, "model": "other-model", "operation": "chat", "cached_tokens": 0},
    ),
)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> WrittenRun:
    """A run folder written by ``configure()`` + the pipeline, with what was submitted."""
    return write_run(tmp_path_factory.mktemp("frames") / "run", BATCHES)


@pytest.fixture(scope="module")
def frames(written: WrittenRun) -> Frames:
    """The written run, loaded without the cache."""
    return load(written.path, cache=False)
