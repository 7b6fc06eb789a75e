"""Small helpers of the benchmarks (no engine)."""

from __future__ import annotations

import time

from benchmarks._common import spend_cpu


def test_spend_cpu_spends_this_threads_cpu() -> None:
    t0 = time.thread_time()
    spend_cpu(0.002)
    assert time.thread_time() - t0 >= 0.002  # CPU, whatever else ran meanwhile
    spend_cpu(0.0)  # nothing to spend: returns
