"""``write_report`` and ``write_comparison``: a run (or two) as one offline HTML file.

The page shows the run's :class:`~sagellm_obs.run_summary.Summary` as tables and the key charts of
:mod:`sagellm_obs.charts`, with Vega inlined (see :mod:`sagellm_obs.report.page`), so it can be
mailed, archived next to the run and opened without network access.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from altair.typing import ChartType

from sagellm_obs import charts
from sagellm_obs.frames import Frames, load
from sagellm_obs.report.page import ChartBlock, chart_spec, render_page, write_atomic
from sagellm_obs.report.tables import comparison_tables, fleet_tables, summary_tables
from sagellm_obs.run_summary import Summary, summarize

__all__ = [
    "REPORT_NAME",
    "report_charts",
    "write_comparison",
    "write_report",
    "write_run_comparison",
]

REPORT_NAME = "report.html"
"""File name of the report inside a run folder."""

PathLike = str | os.PathLike[str]


_STORY = (
    "Shaded: the workload's phases. In warm, the shared prefixes fill the prefix cache and most "
    "prompt tokens hit; in pressure, long unrelated prompts fill the KV cache: requests wait, "
    "some are preempted (their blocks freed and recomputed later) and the hit rate falls; in "
    "recover, the first request of each prefix misses (its blocks were evicted), then hits again."
)


def report_charts(frames: Frames) -> list[tuple[str, list[ChartBlock]]]:
    """The report's chart sections: latency, requests, engine and an interactive dashboard;
    and, when more than one engine served the run, a fleet section before them."""

    def block(key: str, chart: ChartType, caption: str = "", wide: bool = False) -> ChartBlock:
        return ChartBlock(key, chart_spec(chart), caption, wide)

    return [*_fleet_section(frames, block), *_run_sections(frames, block)]


def _fleet_section(frames: Frames, block: Any) -> list[tuple[str, list[ChartBlock]]]:
    """The "Engines" section: only for fleets (see :mod:`sagellm_obs.frames.fleet`)."""
    from sagellm_obs.frames import is_fleet

    req, steps = frames.requests, frames.steps
    if not is_fleet(req, steps):
        return []
    return [
        (
            "Engines",
            [
                block(
                    "engine-latency",
                    charts.engine_latency(req),
                    "Each engine's p50 (bar) and p99 (tick), side by side.",
                    wide=True,
                ),
                block(
                    "slowest-engine",
                    charts.slowest_engine_chart(req, steps=steps),
                    "The engine whose TTFT p99 holds the fleet back, against the fleet's p99.",
                ),
                block(
                    "engine-imbalance",
                    charts.engine_imbalance(req, steps=steps),
                    "Each engine's share of the arriving requests and output tokens over time.",
                    wide=True,
                ),
                block("engine-kv-usage", charts.engine_kv_usage(steps, requests=req)),
                block("engine-queue", charts.engine_queue(steps, requests=req)),
            ],
        )
    ]


def _run_sections(frames: Frames, block: Any) -> list[tuple[str, list[ChartBlock]]]:
    req, steps = frames.requests, frames.steps
    acts = charts.workload_phases(req)  # a phased workload's acts shade the engine timelines
    story = _STORY if acts.height else ""

    def engine(chart: ChartType) -> ChartType:
        return charts.with_workload_phases(chart, acts)

    return [
        (
            "Latency",
            [
                block("ttft", charts.latency_distribution(req, "ttft_s")),
                block("e2e", charts.latency_distribution(req, "e2e_s")),
                block("ttft-over-time", charts.latency_over_time(req, "ttft_s")),
                block("ttft-vs-prompt", charts.ttft_vs_prompt(req)),
            ],
        ),
        (
            "Requests",
            [
                block(
                    "waterfall",
                    charts.request_waterfall(req),
                    "Each request from its arrival: the engine frontend's share of TTFT "
                    "(tokenisation, hand-off, the first token's way back), queue, prefill "
                    "(TTFT ends there), then decode.",
                    wide=True,
                ),
                block("cached-share-by-request", charts.cached_share_by_request(req)),
            ],
        ),
        (
            "Engine",
            [
                block("kv-usage", engine(charts.kv_usage(steps)), story),
                block("prefix-hit-rate", engine(charts.prefix_hit_rate(steps))),
                block("throughput", engine(charts.throughput(steps))),
                block("concurrency", engine(charts.concurrency(steps))),
            ],
        ),
        (
            "Explore",
            [
                block(
                    "dashboard",
                    charts.run_dashboard(frames),
                    "Drag over a timeline to filter the request charts below it.",
                    wide=True,
                )
            ],
        ),
    ]


def _intro(summary: Summary, run_dir: Path) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    model = f" · model <code>{html.escape(summary.model)}</code>" if summary.model else ""
    return (
        f'<p class="meta">Run <code>{html.escape(run_dir.name)}</code>{model} · '
        f"{summary.requests:,} requests · generated {when} by sagellm-obs</p>"
    )


def write_report(
    run_dir: PathLike,
    out: PathLike | None = None,
    *,
    slo: dict[str, float] | None = None,
    also: Sequence[PathLike] = (),
    replicas: bool = True,
) -> Path:
    """Writes a run's report: summary tables and charts in one self-contained HTML file.

    When more than one engine served the run, the page opens with an "Engines" table and chart
    section (per-engine latency, KV usage, queue depth, load balance, the slowest engine).

    Args:
        run_dir: The run folder.
        out: Where to write; default ``<run_dir>/report.html``.
        slo: SLO limits for goodput, requests-frame columns to seconds (``{"ttft_s": 0.5}``).
        also: More run folders loaded with it as one fleet (e.g. the replicas' runs of a
            ``run --endpoint URL1,URL2`` client run).
        replicas: Join the replica run folders a client run names, as
            :func:`sagellm_obs.frames.load` does.

    Returns:
        The path written.
    """
    run = Path(run_dir)
    runs = [run, *(Path(p) for p in also)]
    summary = summarize(runs, slo=slo, replicas=replicas)
    frames = load(runs if len(runs) > 1 else run, errors="skip", cache=False, replicas=replicas)
    sections = [("Summary", summary_tables(summary))]
    fleet = fleet_tables(summary)
    if fleet:
        sections.append(("Engines", fleet))
    page = render_page(
        "sageLLM run report",
        intro=_intro(summary, run),
        sections=sections,
        charts=report_charts(frames),
    )
    return write_atomic(Path(out) if out is not None else run / REPORT_NAME, page)


def _labels(runs: Sequence[Path], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(runs):
            raise ValueError(f"{len(labels)} labels for {len(runs)} runs")
        return list(labels)
    names = [run.name for run in runs]
    if all(names) and len(set(names)) == len(names):
        return names
    return [chr(ord("A") + i) if i < 26 else f"run {i + 1}" for i in range(len(runs))]


def write_comparison(
    run_a: PathLike,
    run_b: PathLike,
    out: PathLike | None = None,
    *,
    labels: tuple[str, str] | None = None,
    slo: dict[str, float] | None = None,
) -> Path:
    """Writes two runs side by side: :func:`write_run_comparison` of ``[run_a, run_b]``."""
    return write_run_comparison([run_a, run_b], out, labels=labels, slo=slo)


def write_run_comparison(
    runs: Sequence[PathLike],
    out: PathLike | None = None,
    *,
    labels: Sequence[str] | None = None,
    slo: dict[str, float] | None = None,
) -> Path:
    """Writes runs side by side: every summary with its deltas against the first run (the
    baseline), and the comparison charts of their latencies.

    Args:
        runs: Run folders, the baseline first (two or more).
        out: Where to write; default ``<last run>/comparison.html``.
        labels: Names of the runs; default their folder names (or ``A``, ``B``, ...).
        slo: SLO limits for goodput, as in :func:`write_report`.

    Returns:
        The path written.

    Raises:
        ValueError: Fewer than two runs, or not one label per run.
    """
    paths = [Path(run) for run in runs]
    if len(paths) < 2:
        raise ValueError("a comparison needs two runs or more")
    names = _labels(paths, labels)
    summaries = [summarize(path, slo=slo) for path in paths]
    requests = {
        name: load(path, errors="skip").requests for name, path in zip(names, paths, strict=True)
    }
    blocks = [
        ChartBlock(
            f"compare-{metric.removesuffix('_s')}",
            chart_spec(charts.compare_runs(requests, metric)),
            wide=True,
        )
        for metric in ("ttft_s", "e2e_s", "tpot_s", "queue_s")
    ]
    base = names[0]
    listed = ", ".join(
        f"<code>{html.escape(n)}</code> ({html.escape(str(p))})"
        for n, p in zip(names[1:], paths[1:], strict=True)
    )
    intro = (
        f'<p class="meta">Baseline <code>{html.escape(base)}</code> '
        f"({html.escape(str(paths[0]))}) against {listed}; each Δ is a run minus "
        f"{html.escape(base)}.</p>"
    )
    page = render_page(
        "sageLLM run comparison: " + " vs ".join(names),
        intro=intro,
        sections=[("Summary", comparison_tables(summaries, names))],
        charts=[("Latency", blocks)],
    )
    return write_atomic(Path(out) if out is not None else paths[-1] / "comparison.html", page)
