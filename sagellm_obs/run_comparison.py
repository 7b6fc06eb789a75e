"""Runs side by side: the figures compared, the terminal table and what :func:`render_comparison`
prints for ``sagellm-obs compare`` (the HTML comparison is :mod:`sagellm_obs.report`).

The first run is the baseline (A); every other run (B, C, ...) has its value, its difference from
A and its ratio to A. Rates are shown in percent and their differences in percentage points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from rich.console import Group
from rich.table import Table
from rich.text import Text

from sagellm_obs.run_setup import run_letters, setup_differences
from sagellm_obs.run_summary import Summary, warm_start_text

__all__ = ["comparison_rows", "comparison_table", "comparison_values", "render_comparison"]


class _Compared(NamedTuple):
    """A figure compared between runs: its label, where it is, and its unit."""

    label: str
    key: str  # "TTFT.p50" (a latency quantile, shown in ms) or a Summary field
    unit: str = ""  # "ms", "%" (a fraction shown in percent, differences in points) or ""


_COMPARE_ROWS: tuple[_Compared, ...] = (
    _Compared("TTFT p50 (ms)", "TTFT.p50", "ms"),
    _Compared("TTFT p99 (ms)", "TTFT.p99", "ms"),
    _Compared("frontend p50 (ms)", "frontend.p50", "ms"),
    _Compared("queue p50 (ms)", "queue.p50", "ms"),
    _Compared("prefill p50 (ms)", "prefill.p50", "ms"),
    _Compared("TPOT p50 (ms)", "TPOT.p50", "ms"),
    _Compared("E2E p50 (ms)", "E2E.p50", "ms"),
    _Compared("E2E p99 (ms)", "E2E.p99", "ms"),
    _Compared("request throughput (req/s)", "request_throughput"),
    _Compared("output tokens/s", "output_token_throughput"),
    _Compared("goodput", "goodput", "%"),
    _Compared("prefix-cache hit rate", "prefix_hit_rate", "%"),
    _Compared("mean cached share of prompts", "mean_cached_share", "%"),
    _Compared("server's prefix-cache hit rate", "server_prefix_hit_rate", "%"),
    _Compared("tokens hit on blocks not sent (warm)", "inherited_cache_tokens"),
    _Compared("KV-cache usage peak", "kv_usage_peak", "%"),
    _Compared("preemptions", "preemptions"),
)


def comparison_rows(a: Summary, b: Summary) -> list[tuple[str, float | None, float | None]]:
    """``(label, value_a, value_b)`` for the figures compared between two runs."""
    return [(label, va, vb) for label, (va, vb) in comparison_values([a, b])]


def comparison_values(summaries: Sequence[Summary]) -> list[tuple[str, list[float | None]]]:
    """``(label, [value of each run])`` for the figures compared between runs (ms for latency,
    fractions for rates); a figure no run has (goodput without SLOs) is left out."""
    rows: list[tuple[str, list[float | None]]] = []
    for row in _COMPARE_ROWS:
        vals = [_value(s, row) for s in summaries]
        if any(v is not None for v in vals):
            rows.append((row.label, vals))
    return rows


def _value(s: Summary, row: _Compared) -> float | None:
    if row.unit == "ms":
        metric, q = row.key.split(".")
        v = s.latency.get(metric, {}).get(q)
        return None if v is None else v * 1000
    value = getattr(s, row.key)
    return None if value is None else float(value)


def comparison_table(*summaries: Summary) -> Table:
    """A rich table of runs side by side: the first is the baseline (A), and every other run
    (B, C, ...) has its value, its difference from A and its ratio to A. Rates are shown in
    percent and their differences in percentage points (pp), without a ratio."""
    letters = run_letters(len(summaries))
    others = " ".join(letters[1:]) or "A"
    table = Table(title=f"Run comparison ({others} vs A)", title_justify="left")
    table.add_column("metric")
    table.add_column("A", justify="right")
    for letter in letters[1:]:
        table.add_column(letter, justify="right")
        table.add_column(f"{letter} - A", justify="right")
        table.add_column(f"{letter} / A", justify="right")
    units = {row.label: row.unit for row in _COMPARE_ROWS}
    for label, values in comparison_values(summaries):
        pct = units[label] == "%"
        show = _pct_or_blank if pct else _num
        base = values[0]
        cells = [label, show(base)]
        for v in values[1:]:
            if base is None or v is None:
                cells += [show(v), "", ""]
            elif pct:
                cells += [show(v), f"{(v - base) * 100:+.1f} pp", ""]
            else:
                cells += [show(v), f"{v - base:+.3g}", f"{v / base:.3f}" if base else ""]
        table.add_row(*cells)
    return table


def render_comparison(*summaries: Summary) -> Group:
    """Runs side by side for the terminal: which run is A, B, ... (whole run folders), a warning
    for each set-up difference (:func:`~sagellm_obs.run_setup.setup_differences`), then
    :func:`comparison_table`."""
    letters = run_letters(len(summaries))
    legend = Text(overflow="fold")  # whole folders (folded, never cut), however narrow the terminal
    for i, (letter, s) in enumerate(zip(letters, summaries, strict=True)):
        legend.append(f"{letter}{' (baseline)' if i == 0 else ''}: ", style="bold")
        legend.append(f"{s.run_dir}\n")
    parts: list[Any] = [legend]
    differences = setup_differences([s.setup for s in summaries])
    if differences:
        warning = Text("The runs' set-ups differ; their figures are not like for like:\n", "yellow")
        for line in differences:
            warning.append(f"  - {line}\n", "yellow")
        parts.append(warning)
    warm = [(letter, s) for letter, s in zip(letters, summaries, strict=True) if _warm(s)]
    if warm:
        text = Text("A prefix cache was warm before the run; not like for like:\n", "yellow")
        for letter, s in warm:
            text.append(f"  - {letter}: {warm_start_text(s)}\n", "yellow")
        parts.append(text)
    parts.append(comparison_table(*summaries))
    return Group(*parts)


def _warm(s: Summary) -> bool:
    return bool(s.warm_cache.get("warm_requests"))


def _pct_or_blank(v: float | None) -> str:
    return "" if v is None else f"{v:.1%}"


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.4g}"
