"""Deprecated alias of :mod:`sagellm_obs.run_summary` (renamed: workload/ describes workloads)."""

from __future__ import annotations

import warnings

from sagellm_obs.run_comparison import comparison_rows, render_comparison
from sagellm_obs.run_summary import Summary, render_summary, summarize

__all__ = ["Summary", "comparison_rows", "render_comparison", "render_summary", "summarize"]

warnings.warn(
    "sagellm_obs.summary is renamed sagellm_obs.run_summary",
    DeprecationWarning,
    stacklevel=2,
)
