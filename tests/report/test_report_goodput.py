"""The summary's goodput is ``frames.goodput``: one rule for failed and cancelled requests."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_run import build_run

from sagellm_obs import frames
from sagellm_obs.run_summary import summarize


def test_summary_goodput_agrees_with_frames_goodput_on_cancelled_requests(
    tmp_path: Path,
) -> None:
    # fast requests among the cancelled and failed ones: only the rule can exclude them
    run = build_run(
        tmp_path / "cancelled",
        20,
        seed=3,
        cancelled=frozenset({0, 3, 7}),
        failed=frozenset({5}),
    )
    slo = {"ttft_s": 10.0}  # every finished request meets it
    requests = frames.load(run, cache=False).requests
    assert requests["cancelled"].sum() == 3
    summary = summarize(run, slo=slo)
    assert summary.cancelled == 3
    assert summary.failed == 1
    assert summary.goodput == pytest.approx(frames.goodput(requests, slo))
    # cancelled and failed requests count in the denominator and are never good
    assert summary.goodput == pytest.approx(16 / 20)
    assert summary.goodput_rps == pytest.approx(16 / summary.duration_s)
