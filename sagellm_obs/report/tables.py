"""HTML tables of a run :class:`~sagellm_obs.run_summary.Summary`, alone or two side by side.

The rows match the terminal summary (``sagellm_obs.run_summary.render_summary``): latencies in
milliseconds at p50/p90/p99/mean, then the run's figures. Every value is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sagellm_obs.frames.analysis import QUANTILES, quantile_label
from sagellm_obs.run_setup import RunSetup, setup_differences, slo_text
from sagellm_obs.run_summary import TTFT_NOTE, Summary, latency_rows, warm_start_text

__all__ = [
    "Figure",
    "comparison_tables",
    "fleet_tables",
    "latency_rows",
    "run_figures",
    "setup_table",
    "summary_tables",
]

QUANTILE_STATS = tuple(quantile_label(q) for q in QUANTILES)
STATS = (*QUANTILE_STATS, "mean")


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
    rate: bool = False  # a fraction: shown in percent, differences in percentage points


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
        figures += [
            Figure(f"goodput ({slo_text(s.slo)})", lambda x: x.goodput, _pct, True, rate=True),
            Figure("goodput (req/s)", lambda x: x.goodput_rps, lambda v: f"{v:,.2f}", True),
        ]
    figures += [
        Figure(
            "prefix-cache hit rate (tokens)", lambda x: x.prefix_hit_rate, _pct, True, rate=True
        ),
        Figure(
            "mean cached share of prompts", lambda x: x.mean_cached_share, _pct, True, rate=True
        ),
        Figure(
            "server's prefix-cache hit rate (its /metrics, this run)",
            lambda x: x.server_prefix_hit_rate,
            _pct,
            True,
            rate=True,
        ),
        Figure(
            "prompt tokens hit on blocks the run had not sent (warm cache)",
            lambda x: x.inherited_cache_tokens,
            lambda v: f"{v:,.0f}",
            False,
        ),
        Figure("KV-cache usage peak", lambda x: x.kv_usage_peak, _pct, rate=True),
        Figure("KV-cache usage mean", lambda x: x.kv_usage_mean, _pct, rate=True),
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


def _th(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f'<th scope="row"{attr}>{html.escape(text)}</th>'


def _td(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{html.escape(text)}</td>"


_TTFT_PARTS = ("frontend", "queue", "prefill")


def _latency_th(label: str) -> str:
    """A latency row's heading; TTFT's parts are indented under it."""
    return _th(label, "part" if label.split(" ")[0] in _TTFT_PARTS else "")


def setup_table(setups: Sequence[RunSetup], labels: Sequence[str] = ()) -> str:
    """The runs' set-ups (:meth:`RunSetup.rows`) side by side; a row that differs from the first
    run's is marked. Empty when no manifest says anything."""
    rows = [dict(s.rows()) for s in setups]
    names = list(dict.fromkeys(name for r in rows for name in r))
    if not names:
        return ""
    body = []
    for name in names:
        values = [r.get(name, "") for r in rows]
        cells = [_th(name), _td(values[0], "setup")]
        cells += [_td(v, "setup differs" if v != values[0] else "setup") for v in values[1:]]
        body.append(cells)
    head = ["", *labels] if len(setups) > 1 else ["", "value"]
    return _table("Set-up", head, body, "setup")


def summary_tables(s: Summary) -> str:
    """The run's set-up, the latency-percentile table (ms) and the run-figures table."""
    latency = _table(
        f"Latency (ms) - {s.requests:,} requests",
        ["metric", *STATS],
        [
            [_latency_th(label), *(_td(_ms(q.get(k))) for k in STATS)]
            for label, q in latency_rows(s)
        ],
        "latency",
    )
    figures = []
    for f in run_figures(s):
        value = f.value(s)
        figures.append([_th(f.label), _td("" if value is None else f.fmt(value))])
    run = _table("Run", ["figure", "value"], figures, "run")
    note = f'<p class="note">{html.escape(TTFT_NOTE)}</p>' if "frontend" in s.latency else ""
    warm = warm_note([s], [""])
    return f'{warm}<div class="tables">{setup_table([s.setup])}{latency}{run}</div>{note}'


def warm_note(summaries: Sequence[Summary], labels: Sequence[str]) -> str:
    """A warning for each run whose prefix cache was warm before it (empty when none was)."""
    items = [
        f"<li>{html.escape((label + ': ' if label else '') + warm_start_text(s))}</li>"
        for s, label in zip(summaries, labels, strict=True)
        if s.warm_cache.get("warm_requests")
    ]
    if not items:
        return ""
    return (
        '<div class="warning"><strong>Warm prefix cache: throughput and TTFT look better than '
        f"a cold start would give.</strong><ul>{''.join(items)}</ul></div>"
    )


def _delta(
    a: float | None, b: float | None, higher_is_better: bool | None, rate: bool = False
) -> tuple[str, str, str]:
    """Difference and relative change of ``b`` against ``a``, with a better/worse class; for a
    rate the difference in percentage points and no relative change."""
    if a is None or b is None:
        return "", "", ""
    d = b - a
    cls = ""
    if higher_is_better is not None and d != 0:
        cls = "better" if (d > 0) == higher_is_better else "worse"
    if rate:
        return f"{d * 100:+.1f} pp", "", cls
    rel = f"{d / a:+.1%}" if a else ""
    return f"{d:+,.4g}", rel, cls


def differences_note(summaries: Sequence[Summary], labels: Sequence[str]) -> str:
    """A warning listing what differs between the runs' set-ups (empty when nothing does)."""
    lines = setup_differences([s.setup for s in summaries], labels)
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return (
        '<div class="warning"><strong>The runs\' set-ups differ; their figures are not like '
        f"for like:</strong><ul>{items}</ul></div>"
    )


def comparison_tables(summaries: Sequence[Summary], labels: Sequence[str]) -> str:
    """Runs' latencies and figures side by side: the first is the baseline, and every other run
    has its value, its difference from the baseline and the relative change."""
    base, others = labels[0], list(labels[1:])
    head = ["metric", base]
    for label in others:
        head += [label, f"Δ ({label} - {base})", "Δ %"]
    quantiles = [dict(latency_rows(s)) for s in summaries]
    names = list(dict.fromkeys(name for q in quantiles for name in q))
    body = []
    for name in names:
        for stat in QUANTILE_STATS:
            ms = [q.get(name, {}).get(stat) for q in quantiles]
            row = [_latency_th(f"{name} {stat}"), _td(_ms(ms[0]))]
            for v in ms[1:]:
                d, rel, cls = _delta(_to_ms(ms[0]), _to_ms(v), False)
                row += [_td(_ms(v)), _td(d, cls), _td(rel, cls)]
            body.append(row)
    latency = _table("Latency (ms)", head, body, "latency compare")
    figures: dict[str, Figure] = {}
    for s in summaries:  # the first run's figure of a label describes it
        for f in run_figures(s):
            figures.setdefault(f.label, f)
    rows = []
    for f in figures.values():
        values = [f.value(s) for s in summaries]
        row = [_th(f.label), _td("" if values[0] is None else f.fmt(values[0]))]
        for v in values[1:]:
            d, rel, cls = _delta(values[0], v, f.higher_is_better, f.rate)
            row += [_td("" if v is None else f.fmt(v)), _td(d, cls), _td(rel, cls)]
        rows.append(row)
    run_head = ["figure", base, *(h for label in others for h in (label, "Δ", "Δ %"))]
    run = _table("Run", run_head, rows, "run compare")
    setups = setup_table([s.setup for s in summaries], labels)
    note = differences_note(summaries, labels) + warm_note(summaries, labels)
    return f'{note}<div class="tables">{setups}{latency}{run}</div>'


def _to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def fleet_tables(s: Summary) -> str:
    """Per-engine figures of a fleet (empty for one engine) and, after ``run --endpoint
    URL1,URL2``, the client side per replica. The slowest engine (TTFT p99) is starred."""
    parts = []
    slowest = (s.slowest_engine or {}).get("engine")
    if s.engines:
        head = [
            "engine",
            "requests",
            "failed",
            "share of requests",
            "share of tokens",
            "req/s",
            "tok/s",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "E2E p99 ms",
            "KV mean",
            "KV peak",
            "waiting mean",
            "waiting peak",
        ]
        body = []
        for e in s.engines:
            name = str(e["engine"]) + (" ★" if e["engine"] == slowest else "")
            body.append(
                [
                    _th(name),
                    _td(f"{e['requests']:,}"),
                    _td(f"{e['failed']:,}"),
                    _td(_pct(e["request_share"])),
                    _td(_pct(e["token_share"])),
                    _td(f"{e['request_throughput']:,.2f}"),
                    _td(f"{e['output_token_throughput']:,.1f}"),
                    _td(_ms(e["ttft_p50_s"])),
                    _td(_ms(e["ttft_p99_s"]), "worse" if e["engine"] == slowest else ""),
                    _td(_ms(e["e2e_p99_s"])),
                    _td("" if e["kv_usage_mean"] is None else _pct(e["kv_usage_mean"])),
                    _td("" if e["kv_usage_peak"] is None else _pct(e["kv_usage_peak"])),
                    _td("" if e["waiting_mean"] is None else f"{e['waiting_mean']:,.1f}"),
                    _td("" if e["waiting_peak"] is None else f"{e['waiting_peak']:,}"),
                ]
            )
        caption = f"Engines ({len(s.engines)})"
        if s.slowest_engine:
            fleet_ms = s.slowest_engine["fleet_p99_s"] * 1000
            caption += f" - ★ slowest TTFT p99; the fleet's TTFT p99 is {fleet_ms:,.1f} ms"
        parts.append(_table(caption, head, body, "engines"))
    if s.endpoints:
        head = ["replica", "requests", "failed", "share of requests", "share of tokens"]
        head += ["client TTFT p50 ms", "client E2E p50 ms", "client E2E p99 ms"]
        body = [
            [
                _th(str(e["endpoint"])),
                _td(f"{e['requests']:,}"),
                _td(f"{e['failed']:,}"),
                _td(_pct(e["request_share"])),
                _td(_pct(e["token_share"])),
                _td(_ms(e["client_ttft_p50_s"])),
                _td(_ms(e["client_e2e_p50_s"])),
                _td(_ms(e["client_e2e_p99_s"])),
            ]
            for e in s.endpoints
        ]
        parts.append(_table("Replicas, client side", head, body, "replicas"))
    return f'<div class="tables">{"".join(parts)}</div>' if parts else ""
