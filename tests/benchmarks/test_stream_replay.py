from __future__ import annotations

import asyncio
import math

from benchmarks import _stream_replay


def test_stream_replay_runs_every_mode() -> None:
    best = asyncio.run(_stream_replay._measure(requests=3, reps=1))
    assert set(best) == {"plain", "plain_final", "stream", "generate"}
    assert all(math.isfinite(v) and v >= 0 for v in best.values())


def test_the_hand_off_replay_runs_both_hand_offs() -> None:
    best = asyncio.run(_stream_replay._handoff(readers=2, reps=1))
    assert set(best) == {"vllm", "slot"}
    assert all(math.isfinite(v) and v > 0 for v in best.values())
