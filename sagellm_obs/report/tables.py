"""HTML tables of a run :class:`~sagellm_obs.run_summary.Summary`, alone or two side by side.

The rows match the terminal summary (``sagellm_obs.run_summary.render_summary``): latencies in
milliseconds at p50/p90/p99/mean, then the run's figures. Every value is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sagellm_obs.run_summary import Summary

__all__ = ["Figure", "comparison_tables", "latency_rows", "run_figures", "summary_tables"]

STATS = ("p50", "p90", "p99", "mean")


def latency_rows(s: Summary) -> list[tuple[str, dict[str, float]]]:
    """``(label, {p50, p90, p99, mean} in seconds)`` in the terminal summary's order."""
    rows = list(s.latency.items())
    if s.itl:
        rows.insert(2, ("ITL (client)", s.itl))
    if s.client_ttft:
        rows.insert(1, ("TTFT (client)", s.client_ttft))
    return rows


@dataclass(frozen=True)
class Figure:
    """One run figure: how to read it from a summary, show it, and which direction is better.

    Attributes:
        label: Row heading.
        value: Reads the number (None when the summary lacks it).
        fmt: Formats the number.
        higher_is_better: True, False, or None when neither is better.
    """

    label: str
    value: Callable[[Summary], float | None]
    fmt: Callable[[float], str]
    higher_is_better: bool | None = None


def _pct(x: float) -> str:
    return f"{x:.1%}"


def run_figures(s: Summary) -> list[Figure]:
    """The run figures shown for ``s`` (goodput only when an SLO was given)."""
    figures = [
        Figure("requests", lambda x: x.requests, lambda v: f"{v:,.0f}"),
        Figure("ok", lambda x: x.ok, lambda v: f"{v:,.0f}", True),
        Figure("failed", lambda x: x.failed, lambda v: f"{v:,.0f}", False),
        Figure("cancelled", lambda x: x.cancelled, lambda v: f"{v:,.0f}"),
        Figure("duration (s)", lambda x: x.duration_s, lambda v: f"{v:,.2f}"),
        Figure(
            "request throughput (req/s)",
            lambda x: x.request_throughput,
            lambda v: f"{v:,.2f}",
            True,
        ),
        Figure(
            "output token throughput (tok/s)",
            lambda x: x.output_token_throughput,
            lambda v: f"{v:,.1f}",
            True,
        ),
        Figure(
            "input token throughput (tok/s)",
            lambda x: x.input_token_throughput,
            lambda v: f"{v:,.1f}",
            True,
        ),
    ]
    if s.goodput is not None:
        limits = ", ".join(f"{k.removesuffix('_s')} ≤ {v * 1000:g} ms" for k, v in s.slo.items())
        figures += [
            Figure(f"goodput ({limits})", lambda x: x.goodput, _pct, True),
            Figure("goodput (req/s)", lambda x: x.goodput_rps, lambda v: f"{v:,.2f}", True),
        ]
    figures += [
        Figure("prefix-cache hit rate (tokens)", lambda x: x.prefix_hit_rate, _pct, True),
        Figure("mean cached share of prompts", lambda x: x.mean_cached_share, _pct, True),
        Figure("KV-cache usage peak", lambda x: x.kv_usage_peak, _pct),
        Figure("KV-cache usage mean", lambda x: x.kv_usage_mean, _pct),
        Figure("preemptions", lambda x: x.preemptions, lambda v: f"{v:,.0f}", False),
    ]
    return figures


def _ms(x: float | None) -> str:
    return "" if x is None else f"{x * 1000:,.1f}"


def _table(caption: str, head: Sequence[str], body: Sequence[Sequence[str]], cls: str) -> str:
    """A table; ``body`` cells are trusted HTML (``<td>``/``<th>`` included)."""
    ths = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    rows = "".join(f"<tr>{''.join(cells)}</tr>" for cells in body)
    return (
        f'<table class="{cls}"><caption>{html.escape(caption)}</caption>'
        f"<thead><tr>{ths}</tr></thead><tbody>{rows}</tbody></table>"
    )


def _th(text: str) -> str:
    return f'<th scope="row">{html.escape(text)}</th>'


def _td(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{html.escape(text)}</td>"


def summary_tables(s: Summary) -> str:
    """The latency-percentile table (ms) and the run-figures table of one run."""
    latency = _table(
        f"Latency (ms) - {s.requests:,} requests",
        ["metric", *STATS],
        [[_th(label), *(_td(_ms(q.get(k))) for k in STATS)] for label, q in latency_rows(s)],
        "latency",
    )
    figures = []
    for f in run_figures(s):
        value = f.value(s)
        figures.append([_th(f.label), _td("" if value is None else f.fmt(value))])
    run = _table("Run", ["figure", "value"], figures, "run")
    return f'<div class="tables">{latency}{run}</div>'


def _delta(a: float | None, b: float | None, higher_is_better: bool | None) -> tuple[str, str, str]:
    """Difference and relative change of ``b`` against ``a``, with a better/worse class."""
    if a is None or b is None:
        return "", "", ""
    d = b - a
    rel = f"{d / a:+.1%}" if a else ""
    cls = ""
    if higher_is_better is not None and d != 0:
        cls = "better" if (d > 0) == higher_is_better else "worse"
    return f"{d:+,.4g}", rel, cls


def comparison_tables(a: Summary, b: Summary, labels: tuple[str, str]) -> str:
    """Both runs' latencies and figures side by side, with ``B - A`` and its relative change."""
    la, lb = labels
    head = ["metric", la, lb, f"Δ ({lb} - {la})", "Δ %"]
    body = []
    qa, qb = dict(latency_rows(a)), dict(latency_rows(b))
    for label in [*qa, *(k for k in qb if k not in qa)]:
        for stat in ("p50", "p90", "p99"):
            va, vb = qa.get(label, {}).get(stat), qb.get(label, {}).get(stat)
            d, rel, cls = _delta(
                None if va is None else va * 1000, None if vb is None else vb * 1000, False
            )
            body.append(
                [_th(f"{label} {stat}"), _td(_ms(va)), _td(_ms(vb)), _td(d, cls), _td(rel, cls)]
            )
    latency = _table("Latency (ms)", head, body, "latency compare")
    rows = []
    by_label = {f.label: f for f in run_figures(a)}
    by_label.update({f.label: f for f in run_figures(b) if f.label not in by_label})
    for f in by_label.values():
        va, vb = f.value(a), f.value(b)
        d, rel, cls = _delta(va, vb, f.higher_is_better)
        cells = [_td("" if v is None else f.fmt(v)) for v in (va, vb)]
        rows.append([_th(f.label), *cells, _td(d, cls), _td(rel, cls)])
    run = _table("Run", ["figure", la, lb, "Δ", "Δ %"], rows, "run compare")
    return f'<div class="tables">{latency}{run}</div>'
