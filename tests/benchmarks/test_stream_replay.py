from __future__ import annotations

import asyncio
import math

from benchmarks import _stream_replay


def test_stream_replay_runs_every_mode() -> None:
    best = asyncio.run(_stream_replay._measure(requests=3, reps=1))
    assert set(best) == {"plain", "plain_final", "stream", "generate"}
    assert all(math.isfinite(v) and v >= 0 for v in best.values())
