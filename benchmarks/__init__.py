"""Benchmarks of sagellm-obs: ``python -m benchmarks [NAME] [--quick]`` (``make bench``).

Each benchmark measures ratios within one run (A and B interleaved, repeatedly), never asserts a
timing, prints the command that reproduces it, writes ``benchmarks/results/<name>.json`` and
regenerates its table in ``docs/benchmarks.md``. See that document for the results.
"""

from __future__ import annotations

BENCHMARKS = (
    "telemetry_cost",
    "engine_overhead",
    "engine_overhead_small",
    "loading",
    "charts",
    "clickhouse",
    "server",
)
"""Every benchmark, in the order ``python -m benchmarks`` runs them."""

__all__ = ["BENCHMARKS"]
