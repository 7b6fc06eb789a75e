"""Run reports: one self-contained HTML file per run (or per comparison) that renders offline.

Example:
    .. code-block:: python

        from sagellm_obs.report import write_report, write_comparison

        write_report("sagellm-runs/20260101T000000Z-abc123")  # -> .../report.html
        write_comparison("runs/baseline", "runs/prefix-cache", "compare.html")
"""

from __future__ import annotations

from sagellm_obs.report.html import (
    REPORT_NAME,
    report_charts,
    write_comparison,
    write_report,
    write_run_comparison,
)

__all__ = [
    "REPORT_NAME",
    "report_charts",
    "write_comparison",
    "write_report",
    "write_run_comparison",
]
