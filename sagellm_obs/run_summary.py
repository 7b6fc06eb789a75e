"""The run summary: latency percentiles, throughput, goodput, prefix-cache and KV figures.

Computed only from what the run folder holds (request spans, step records, client timings), so the
summary printed at the end of ``sagellm-obs run`` can be recomputed from the stored traces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Group
from rich.table import Table
from rich.text import Text

from sagellm_obs.frames.analysis import QUANTILES, good_requests, quantile_label
from sagellm_obs.run_setup import RunSetup, read_setup, slo_text

# (label, requests-frame column): engine-side latencies, seconds. TTFT's parts follow it: for each
# request TTFT = frontend + queue + prefill (frames' ``frontend_s``), so their means add up.
LATENCIES = (
    ("TTFT", "ttft_s"),
    ("frontend", "frontend_s"),
    ("queue", "queue_s"),
    ("prefill", "prefill_s"),
    ("TPOT", "tpot_s"),
    ("decode", "decode_s"),
    ("E2E", "e2e_s"),
)
TTFT_NOTE = (
    "TTFT = frontend + queue + prefill for every request, so their means add up (percentiles of "
    "the parts need not). frontend: arrival until EngineCore queues the request (tokenisation, "
    "hand-off) and the first token's way back."
)


@dataclass
class Summary:
    """What a run did. Latencies are in seconds; rates are fractions in [0, 1]."""

    run_dir: str
    requests: int
    ok: int
    failed: int
    cancelled: int
    duration_s: float
    request_throughput: float
    output_token_throughput: float
    input_token_throughput: float
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    itl: dict[str, float] = field(default_factory=dict)
    client_ttft: dict[str, float] = field(default_factory=dict)
    slo: dict[str, float] = field(default_factory=dict)
    goodput: float | None = None
    goodput_rps: float | None = None
    prefix_hit_rate: float = 0.0
    mean_cached_share: float = 0.0
    kv_usage_peak: float = 0.0
    kv_usage_mean: float = 0.0
    preemptions: int = 0
    model: str = ""
    note: str = ""
    #: One dict per engine (``frames.fleet.ENGINE_STATS`` columns) when more than one engine
    #: served the run, else empty.
    engines: list[dict[str, Any]] = field(default_factory=list)
    #: The engine with the highest TTFT p99 and the fleet's (``frames.fleet.slowest_engine``),
    #: for fleets only.
    slowest_engine: dict[str, Any] | None = None
    #: Client-side figures per replica of ``run --endpoint URL1,URL2`` (from the client rows).
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    #: The warm-cache check (:class:`~sagellm_obs.frames.warm_cache.WarmCache` as a dict).
    warm_cache: dict[str, Any] = field(default_factory=dict)
    #: ``run --endpoint``: the servers' own counters over the run (their ``/metrics`` after
    #: minus before, :class:`~sagellm_obs.workload.server_counters.ServerCounters` as a dict,
    #: summed over the endpoints), with ``endpoints`` holding each one's.
    server_counters: dict[str, Any] = field(default_factory=dict)
    setup: RunSetup = field(default_factory=RunSetup)

    @property
    def server_prefix_hit_rate(self) -> float | None:
        """The servers' own prefix-cache hit rate over the run (``run --endpoint``), or None."""
        rate = self.server_counters.get("prefix_hit_rate")
        return None if rate is None else float(rate)

    @property
    def inherited_cache_tokens(self) -> float | None:
        """Prompt tokens hit on blocks the run had not sent (warm cache), None if unchecked."""
        if not self.warm_cache.get("checked"):
            return None
        return float(self.warm_cache.get("inherited_tokens") or 0)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for JSON, reports and comparisons)."""
        from dataclasses import asdict

        return asdict(self)


def _quantiles(values: pl.Series) -> dict[str, float]:
    values = values.drop_nulls().drop_nans() if values.dtype.is_float() else values.drop_nulls()
    if values.is_empty():
        return {}
    out = {
        quantile_label(q): float(values.quantile(q, interpolation="linear") or 0.0)
        for q in QUANTILES
    }
    out["mean"] = float(values.mean() or 0.0)  # type: ignore[arg-type]
    return out


def _client_rows(run_dir: Path) -> list[dict[str, Any]]:
    from sagellm_obs.store import files_of, iter_jsonl

    rows: list[dict[str, Any]] = []
    for f in files_of(run_dir, "requests-client"):
        rows.extend(obj for _, obj in iter_jsonl(f, errors="skip"))
    return rows


def summarize(
    run: str | Path | Sequence[str | Path],
    *,
    slo: dict[str, float] | None = None,
    replicas: bool = True,
) -> Summary:
    """Summarise a run folder, or several loaded as one (a client run and its replicas' runs).

    Args:
        run: The run folder (or folders: the first one's manifest gives the set-up).
        slo: Goodput SLOs, requests-frame columns (``ttft_s``...) to limits in seconds; None
            takes those the run recorded (``sagellm-obs run --slo``), ``{}`` none.
        replicas: Join the replica run folders a client run names (``run --endpoint``), as
            :func:`sagellm_obs.frames.load` does.

    When more than one engine served the run, ``engines`` splits it by engine and
    ``slowest_engine`` names the one with the highest TTFT p99; client rows sent to several
    replicas are split in ``endpoints``.
    """
    from sagellm_obs.frames import load

    runs = [Path(run)] if isinstance(run, str | Path) else [Path(r) for r in run]
    run_dir = runs[0]
    setup = read_setup(run_dir)
    if slo is None:
        slo = setup.slo
    frames = load(runs if len(runs) > 1 else run_dir, errors="skip", cache=False, replicas=replicas)
    req = frames.requests
    steps = frames.steps
    n = req.height
    failed = int(req.filter(pl.col("error_type").is_not_null()).height) if n else 0
    cancelled = int(req.filter(pl.col("cancelled").fill_null(False)).height) if n else 0
    ok_frame = req.filter(pl.col("error_type").is_null() & ~pl.col("cancelled").fill_null(False))
    duration = 0.0
    if n:
        start = req["arrival"].min()
        end = req.select(
            (pl.col("arrival") + pl.duration(microseconds=pl.col("e2e_s") * 1e6)).max()
        ).item()
        if start is not None and end is not None:
            duration = max((end - start).total_seconds(), 1e-9)
    rate = (lambda x: x / duration) if duration > 0 else (lambda x: 0.0)
    summary = Summary(
        run_dir=str(run_dir),
        requests=n,
        ok=ok_frame.height,
        failed=failed,
        cancelled=cancelled,
        duration_s=duration,
        request_throughput=rate(ok_frame.height),
        output_token_throughput=rate(float(req["output_tokens"].sum() or 0)),
        input_token_throughput=rate(float(req["input_tokens"].sum() or 0)),
        model=str(req["model"][0]) if n else (setup.model or ""),
        setup=setup,
    )
    for label, col in LATENCIES:
        if col in ok_frame.columns:
            q = _quantiles(ok_frame[col])
            if q:
                summary.latency[label] = q
    client = [row for r in runs for row in _client_rows(r)]
    itl = [x / 1000.0 for row in client for x in (row.get("client_itl_ms") or [])]
    if itl:
        summary.itl = _quantiles(pl.Series(itl, dtype=pl.Float64))
    client_ttft = [row["client_ttft_s"] for row in client if row.get("client_ttft_s") is not None]
    if client_ttft:
        summary.client_ttft = _quantiles(pl.Series(client_ttft, dtype=pl.Float64))
    if not n and client:
        _client_only(summary, client)
    if slo:
        summary.slo = dict(slo)
        if n:
            # frames.goodput's rule (failed and cancelled requests are never good), in counts
            good = req.filter(good_requests(slo, req.columns)).height
            summary.goodput = good / n
            summary.goodput_rps = rate(good)
    if n:
        summary.mean_cached_share = float(
            req.select((pl.col("cached_tokens") / pl.col("input_tokens")).fill_nan(0).mean()).item()
            or 0.0
        )
    if steps.height:
        queries = int(steps["prefix_queries"].sum() or 0)
        hits = int(steps["prefix_hits"].sum() or 0)
        summary.prefix_hit_rate = hits / queries if queries else 0.0
        summary.kv_usage_peak = float(steps["kv_cache_usage"].max() or 0.0)  # type: ignore[arg-type]
        summary.kv_usage_mean = float(steps["kv_cache_usage"].mean() or 0.0)  # type: ignore[arg-type]
        summary.preemptions = int(steps["preemptions"].sum() or 0)
    _split_by_engine(summary, req, steps)
    summary.endpoints = _endpoints(client)
    _warm_cache(summary, frames, client)
    summary.server_counters = _server_counters(run_dir)
    return summary


def _server_counters(run_dir: Path) -> dict[str, Any]:
    from sagellm_obs.frames.sources import read_manifest
    from sagellm_obs.workload.server_counters import MANIFEST_KEY

    got = read_manifest(run_dir).get(MANIFEST_KEY)
    return dict(got) if isinstance(got, dict) else {}


def _warm_cache(summary: Summary, frames: Any, client: list[dict[str, Any]]) -> None:
    """The warm-cache check: on our spans' prefix blocks when the run has them (only the
    client's requests, when the server's folder holds other runs too), else on the client
    rows' families."""
    from sagellm_obs.frames.warm_cache import warm_cache, warm_cache_of_clients

    # scan_spans: reads the request and queue spans only, and leaves the spans frame unloaded
    check = warm_cache(frames.requests, frames.scan_spans(), client=client or None)
    if not check.checked and client:
        check = warm_cache_of_clients(client)
    summary.warm_cache = check.as_dict()


def _split_by_engine(summary: Summary, req: pl.DataFrame, steps: pl.DataFrame) -> None:
    """Per-engine figures, when more than one engine served the run."""
    from sagellm_obs.frames import fleet

    if not fleet.is_fleet(req, steps):
        return
    summary.engines = fleet.engine_stats(req, steps).to_dicts()
    summary.slowest_engine = fleet.slowest_engine(req, steps)


def _endpoints(client: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Client rows split by the replica they went to (only when there were several)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for row in client:
        replica = row.get("replica")
        if replica:
            by.setdefault(str(replica), []).append(row)
    if len(by) < 2:
        return []
    total = sum(len(rows) for rows in by.values())
    tokens = sum(int(r.get("output_tokens") or 0) for rows in by.values() for r in rows)
    out = []
    for replica, rows in sorted(by.items()):
        ok = [r for r in rows if r.get("error") is None]
        out_tokens = sum(int(r.get("output_tokens") or 0) for r in rows)
        e2e = _quantiles(pl.Series([r.get("client_e2e_s") for r in ok], dtype=pl.Float64))
        ttft = _quantiles(pl.Series([r.get("client_ttft_s") for r in ok], dtype=pl.Float64))
        out.append(
            {
                "endpoint": replica,
                "requests": len(rows),
                "ok": len(ok),
                "failed": len(rows) - len(ok),
                "request_share": len(rows) / total if total else 0.0,
                "output_tokens": out_tokens,
                "token_share": out_tokens / tokens if tokens else 0.0,
                "client_ttft_p50_s": ttft.get("p50"),
                "client_ttft_p99_s": ttft.get("p99"),
                "client_e2e_p50_s": e2e.get("p50"),
                "client_e2e_p99_s": e2e.get("p99"),
            }
        )
    return out


CLIENT_ONLY_NOTE = "client-side figures only: engine-side spans are in the server's run folder"


def _client_only(summary: Summary, client: list[dict[str, Any]]) -> None:
    """Fill ``summary`` from client rows alone (``sagellm-obs run --endpoint``: no engine here)."""
    rows = {str(r["request_id"]): r for r in client if r.get("request_id") is not None}
    cancelled = sum(1 for r in rows.values() if r.get("error") == "cancelled")
    failed = sum(1 for r in rows.values() if r.get("error") not in (None, "cancelled"))
    ok = [r for r in rows.values() if r.get("error") is None]
    starts = [
        int(r["client_start_unix_nano"]) for r in rows.values() if r.get("client_start_unix_nano")
    ]
    ends = [
        int(r["client_start_unix_nano"]) + int(float(r.get("client_e2e_s") or 0.0) * 1e9)
        for r in rows.values()
        if r.get("client_start_unix_nano")
    ]
    duration = max((max(ends) - min(starts)) / 1e9, 1e-9) if starts else 0.0
    out_tokens = sum(int(r.get("output_tokens") or 0) for r in rows.values())
    summary.requests = len(rows)
    summary.ok, summary.failed, summary.cancelled = len(ok), failed, cancelled
    summary.duration_s = duration
    if duration > 0:
        summary.request_throughput = len(ok) / duration
        summary.output_token_throughput = out_tokens / duration
    usage = [r for r in rows.values() if r.get("cached_tokens") is not None]
    prompt = sum(int(r.get("input_tokens") or 0) for r in usage)
    if prompt:  # the server's usage: cached / prompt tokens, as vLLM's hits / queries
        summary.prefix_hit_rate = sum(int(r["cached_tokens"]) for r in usage) / prompt
        summary.mean_cached_share = sum(
            int(r["cached_tokens"]) / int(r["input_tokens"]) for r in usage if r.get("input_tokens")
        ) / len(usage)
    e2e = [float(r["client_e2e_s"]) for r in ok if r.get("client_e2e_s") is not None]
    if e2e:
        summary.latency["E2E (client)"] = _quantiles(pl.Series(e2e, dtype=pl.Float64))
    summary.note = CLIENT_ONLY_NOTE


def _ms(x: float | None) -> str:
    return "" if x is None else f"{x * 1000:.1f}"


def latency_rows(s: Summary) -> list[tuple[str, dict[str, float]]]:
    """``(label, {p50, p90, p99, mean} in seconds)`` in the order the summary shows them: the
    engine's latencies (TTFT, its parts, TPOT, decode, E2E), the client's TTFT after TTFT's parts
    and the client's ITL after TPOT."""
    anchor = "prefill" if "prefill" in s.latency else "TTFT"
    client = {anchor: ("TTFT (client)", s.client_ttft), "TPOT": ("ITL (client)", s.itl)}
    rows: list[tuple[str, dict[str, float]]] = []
    for label, q in s.latency.items():
        rows.append((label, q))
        extra = client.pop(label, None)
        if extra is not None and extra[1]:
            rows.append(extra)
    rows.extend(row for row in client.values() if row[1])  # a run without TTFT or TPOT rows
    return rows


def setup_table(setup: RunSetup, title: str = "Set-up") -> Table | None:
    """The run's set-up (:meth:`RunSetup.rows`) as a table; None when the manifest has none."""
    rows = setup.rows()
    if not rows:
        return None
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for label, value in rows:
        table.add_row(label, value)
    return table


def render_summary(s: Summary) -> Group:
    """Rich tables of a :class:`Summary` for the terminal: set-up, latency, run figures."""
    lat = Table(
        title=f"Latency (ms) - {s.requests} requests, model {s.model}", title_justify="left"
    )
    lat.add_column("metric")
    stats = (*(quantile_label(q) for q in QUANTILES), "mean")
    for col in stats:
        lat.add_column(col, justify="right")
    for label, q in latency_rows(s):
        shown = f"  {label}" if label in _TTFT_PARTS else label
        lat.add_row(shown, *(_ms(q.get(k)) for k in stats))
    run = Table(title="Run", title_justify="left", show_header=False)
    run.add_column("what")
    run.add_column("value", justify="right")
    run.add_row("requests ok / failed / cancelled", f"{s.ok} / {s.failed} / {s.cancelled}")
    run.add_row("duration", f"{s.duration_s:.2f} s")
    run.add_row("request throughput", f"{s.request_throughput:.2f} req/s")
    run.add_row("output token throughput", f"{s.output_token_throughput:.1f} tok/s")
    run.add_row("input token throughput", f"{s.input_token_throughput:.1f} tok/s")
    if s.goodput is not None:
        run.add_row(
            f"goodput ({slo_text(s.slo)})", f"{s.goodput:.1%} ({s.goodput_rps or 0:.2f} req/s)"
        )
    run.add_row("prefix-cache hit rate (tokens)", f"{s.prefix_hit_rate:.1%}")
    _prefix_cache_rows(run, s)
    run.add_row("mean cached share of prompts", f"{s.mean_cached_share:.1%}")
    run.add_row("KV-cache usage peak / mean", f"{s.kv_usage_peak:.1%} / {s.kv_usage_mean:.1%}")
    run.add_row("preemptions", str(s.preemptions))
    note = Text(TTFT_NOTE, style="dim") if "frontend" in s.latency else None
    parts: list[Any] = [t for t in (setup_table(s.setup), lat, note, run) if t is not None]
    if s.engines:
        parts.append(render_engines(s))
    if s.endpoints:
        parts.append(render_endpoints(s))
    if s.warm_cache.get("warm_requests"):
        parts.append(Text(f"Warm prefix cache: {warm_start_text(s)}", style="bold yellow"))
    if s.note:
        parts.append(s.note)
    return Group(*parts)


def _prefix_cache_rows(run: Table, s: Summary) -> None:
    """The servers' own hit rate over the run and the warm-start flag, when known."""
    from sagellm_obs.frames.warm_cache import WarmCache
    from sagellm_obs.workload.server_counters import hit_rate_text

    if s.server_counters.get("prefix_queries") is not None:
        label = "server's prefix-cache hit rate (its /metrics, this run)"
        run.add_row(label, hit_rate_text(s.server_counters))
    if s.warm_cache:
        check = WarmCache.from_dict(s.warm_cache)
        run.add_row(f"warm start (first {check.first_requests} requests)", check.word())


def warm_start_text(s: Summary) -> str:
    """The warm-cache check in one line (``YES: ...`` / ``no: ...``); empty when not run."""
    from sagellm_obs.frames.warm_cache import WarmCache

    return WarmCache.from_dict(s.warm_cache).text() if s.warm_cache else ""


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.0%}"


def render_engines(s: Summary) -> Table:
    """The per-engine table of a fleet's :class:`Summary` (the slowest engine starred)."""
    slowest = (s.slowest_engine or {}).get("engine")
    title = f"Engines ({len(s.engines)})"
    if s.slowest_engine:
        ratio = s.slowest_engine.get("ratio")
        title += f" - slowest TTFT p99: {slowest}"
        if ratio:
            title += f" ({ratio:.2f}x the fleet's {s.slowest_engine['fleet_p99_s'] * 1000:.1f} ms)"
    table = Table(title=title, title_justify="left")
    for col, right in (
        ("engine", False),
        ("requests", True),
        ("share req / tok", True),
        ("req/s", True),
        ("tok/s", True),
        ("TTFT p50 ms", True),
        ("TTFT p99 ms", True),
        ("KV mean / peak", True),
        ("waiting mean / peak", True),
    ):
        table.add_column(col, justify="right" if right else "left")
    for e in s.engines:
        name = str(e["engine"]) + (" *" if e["engine"] == slowest else "")
        table.add_row(
            name,
            f"{e['requests']} ({e['failed']} failed)" if e["failed"] else str(e["requests"]),
            f"{_pct(e['request_share'])} / {_pct(e['token_share'])}",
            f"{e['request_throughput']:.2f}",
            f"{e['output_token_throughput']:.1f}",
            _ms(e["ttft_p50_s"]),
            _ms(e["ttft_p99_s"]),
            f"{_pct(e['kv_usage_mean'])} / {_pct(e['kv_usage_peak'])}",
            "" if e["waiting_mean"] is None else f"{e['waiting_mean']:.1f} / {e['waiting_peak']}",
        )
    return table


def render_endpoints(s: Summary) -> Table:
    """Client-side figures per replica (``run --endpoint URL1,URL2``)."""
    table = Table(title=f"Replicas ({len(s.endpoints)}), client side", title_justify="left")
    for col in ("endpoint", "requests", "share req / tok", "TTFT p50 ms", "E2E p50 / p99 ms"):
        table.add_column(col, justify="left" if col == "endpoint" else "right")
    for e in s.endpoints:
        table.add_row(
            e["endpoint"],
            f"{e['requests']} ({e['failed']} failed)" if e["failed"] else str(e["requests"]),
            f"{_pct(e['request_share'])} / {_pct(e['token_share'])}",
            _ms(e["client_ttft_p50_s"]),
            f"{_ms(e['client_e2e_p50_s'])} / {_ms(e['client_e2e_p99_s'])}",
        )
    return table


_TTFT_PARTS = ("frontend", "queue", "prefill")


_MOVED = ("comparison_rows", "comparison_table", "comparison_values", "render_comparison")


def __getattr__(name: str) -> Any:
    """The comparison's names, whose home is :mod:`sagellm_obs.run_comparison`."""
    if name in _MOVED:
        from sagellm_obs import run_comparison

        return getattr(run_comparison, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
