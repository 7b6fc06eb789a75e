"""What each panel target of the truth test is held against: figures from the run folders.

A :class:`View` is the run folders as one pick of the dashboard sees them; ``CHECKS`` names, per
panel target, the figure (a function of the view, or a :class:`Quantile`) and how it is compared
(:func:`compare`): exact, to a relative tolerance, or within the exact quantile's bucket and equal
to Prometheus's interpolation redone from bucket counts (:func:`prom_quantile`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from sagellm_obs import semconv as sc
from tests.dashboards.truth_fleet import ENGINE, Key


@dataclass
class View:
    """The run folders as one pick of the dashboard sees them."""

    requests: pl.DataFrame  # the picked engines' requests
    steps: pl.DataFrame  # the picked engines' steps
    fleet: pl.DataFrame  # every engine's requests (the imbalance panels' denominator)
    slo: dict[str, float]  # the SLO pickers' values


def engine_key(engine_id: str, engine_idx: int | None) -> Key:
    return (engine_id, str(engine_idx or 0))


def _per_engine(df: pl.DataFrame, value: pl.Expr) -> dict[Key, float]:
    rows = df.group_by("engine_id", "engine_idx").agg(value.alias("v")).iter_rows(named=True)
    return {engine_key(r["engine_id"], r["engine_idx"]): float(r["v"]) for r in rows}


def _last_steps(v: View) -> pl.DataFrame:
    """Each engine's last step record (the gauges' last value)."""
    return v.steps.sort("time", "step").group_by("engine_id", "engine_idx").last()


def _ok(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("error_type").is_null())


def _values(df: pl.DataFrame, col: str) -> list[float]:
    return [float(x) for x in df[col].drop_nulls()]


def prom_quantile(q: float, values: list[float], bounds: tuple[float, ...]) -> float:
    """Prometheus's ``histogram_quantile`` over the buckets ``values`` fall in (its documented
    algorithm: the bucket where the rank ``q * n`` falls, linear inside it, the lowest bucket
    starting at 0, ranks past the last bound answered with that bound)."""
    if not values:
        return math.nan
    cumulative = [sum(1 for x in values if x <= b) for b in bounds]
    rank = q * len(values)
    b = next((i for i, c in enumerate(cumulative) if c >= rank), len(bounds))
    if b == len(bounds):
        return bounds[-1]
    start, count = (0.0, cumulative[0]) if b == 0 else (bounds[b - 1], cumulative[b])
    if b > 0:
        count -= cumulative[b - 1]
        rank -= cumulative[b - 1]
    return start + (bounds[b] - start) * rank / count


def _exact_bucket(q: float, values: list[float], bounds: tuple[float, ...]) -> tuple[float, float]:
    """The bucket (lower, upper] holding the exact quantile: the observation of rank ceil(q n)."""
    exact = sorted(values)[max(math.ceil(q * len(values)), 1) - 1]
    lower = 0.0
    for upper in bounds:
        if exact <= upper:
            return lower, upper
        lower = upper
    return bounds[-1], bounds[-1]  # past the last bound: Prometheus answers that bound


@dataclass(frozen=True)
class Quantile:
    """``histogram_quantile(q, ...)`` of ``column``, per engine or over the picked rows."""

    q: float
    column: str
    bounds: tuple[float, ...]
    per_engine: bool = False
    fleet: bool = False  # over every engine, whatever is picked

    def groups(self, v: View) -> dict[Key, list[float]]:
        df = v.fleet if self.fleet else v.requests
        if not self.per_engine:
            return {(): _values(df, self.column)}
        out: dict[Key, list[float]] = {}
        for (engine_id, idx), part in df.group_by("engine_id", "engine_idx"):
            out[engine_key(str(engine_id), idx)] = _values(part, self.column)
        return out

    def want(self, v: View) -> dict[Key, float]:
        return {k: prom_quantile(self.q, xs, self.bounds) for k, xs in self.groups(v).items()}

    def bucket(self, v: View) -> dict[Key, tuple[float, float]]:
        return {k: _exact_bucket(self.q, xs, self.bounds) for k, xs in self.groups(v).items()}


@dataclass(frozen=True)
class Check:
    """What one panel target is held against, and how."""

    figure: str  # the run folder's figure, in words (shown on a mismatch)
    want: Callable[[View], dict[Key, float]] | Quantile
    labels: tuple[str, ...] = ()  # the result's labels, in the order of the keys of `want`
    rel: float = 0.0  # 0: exact
    top1: bool = False  # topk(1, ...): the one series with the highest wanted value


def _count(v: View) -> dict[Key, float]:
    return {(): float(v.requests.height)}


def _steps_sum(col: str) -> Callable[[View], dict[Key, float]]:
    return lambda v: {(): float(v.steps[col].sum())}


def _hit_rate(v: View) -> dict[Key, float]:
    return {(): float(v.steps["prefix_hits"].sum()) / float(v.steps["prefix_queries"].sum())}


def _mean(col: str, ok_only: bool = False) -> Callable[[View], dict[Key, float]]:
    def want(v: View) -> dict[Key, float]:
        df = _ok(v.requests) if ok_only else v.requests
        return {(): float(sum(_values(df, col)) / len(_values(df, col)))}

    return want


def _within(col: str, slo: str) -> Callable[[View], dict[Key, float]]:
    def want(v: View) -> dict[Key, float]:
        xs = _values(v.requests, col)
        return {(): sum(1 for x in xs if x <= v.slo[slo]) / len(xs)}

    return want


def _good_upper_bound(v: View) -> dict[Key, float]:
    ttft = sum(1 for x in _values(v.requests, "ttft_s") if x <= v.slo["ttft_slo"])
    e2e = sum(1 for x in _values(v.requests, "e2e_s") if x <= v.slo["e2e_slo"])
    return {(): float(min(ttft, e2e))}


def _error_ratio(v: View) -> dict[Key, float]:
    return {(): float(v.requests["error_type"].is_not_null().sum()) / v.requests.height}


def _finish_reasons(v: View) -> dict[Key, float]:
    rows = v.requests.group_by("finish_reason", "error_type").len().iter_rows(named=True)
    return {(r["finish_reason"], r["error_type"] or ""): float(r["len"]) for r in rows}


def _last(col: str, how: str) -> Callable[[View], dict[Key, float]]:
    def want(v: View) -> dict[Key, float]:
        last = _last_steps(v)
        if how == "per engine":
            return _per_engine(last, pl.col(col).first())
        value = pl.col(col).max() if how == "max" else pl.col(col).sum()
        return {(): float(last.select(value).item())}

    return want


def _share(col: str | None) -> Callable[[View], dict[Key, float]]:
    """Each picked engine's share of the fleet's requests (``col`` None) or of a column's sum."""

    def want(v: View) -> dict[Key, float]:
        value = pl.len() if col is None else pl.col(col).sum()
        fleet = v.fleet if col is None else _ok(v.fleet)
        total = float(fleet.select(value).item())
        mine = v.requests if col is None else _ok(v.requests)
        return {k: x / total for k, x in _per_engine(mine, value).items()}

    return want


TTFT_B, TPOT_B, E2E_B = sc.BUCKETS_TTFT, sc.M_TPOT.buckets, sc.M_REQUEST_DURATION.buckets
assert TPOT_B is not None and E2E_B is not None
REQ_TOTAL = "requests in the run folders"
CHECKS: dict[tuple[str, str], Check] = {
    ("Request throughput", "A"): Check(REQ_TOTAL, _count),
    ("Output tokens/s", "A"): Check("steps: generation_tokens", _steps_sum("generation_tokens")),
    ("Prefix-cache hit rate", "A"): Check("steps: prefix hits / queries", _hit_rate, rel=1e-12),
    ("KV-cache usage", "A"): Check(
        "last step's KV usage, max over engines", _last("kv_cache_usage", "max")
    ),
    **{
        (title, ref): Check(f"p{round(q * 100)} of requests.{col}", Quantile(q, col, bounds))
        for title, col, bounds in (
            ("Time to first token", "ttft_s", TTFT_B),
            ("Time per output token", "tpot_s", TPOT_B),
            ("End-to-end request duration", "e2e_s", E2E_B),
        )
        for ref, q in (("A", 0.5), ("B", 0.9), ("C", 0.99))
    },
    **{
        ("Where the time goes (mean per request)", ref): Check(
            f"mean of requests.{col}", _mean(col), rel=1e-6
        )
        for ref, col in (("A", "queue_s"), ("B", "prefill_s"), ("C", "decode_s"))
    },
    ("Prefix-cache hit rate over time", "A"): Check(
        "steps: prefix hits / queries", _hit_rate, rel=1e-12
    ),
    ("Running and waiting requests", "A"): Check(
        "last step's running, summed", _last("running", "sum")
    ),
    ("Running and waiting requests", "B"): Check(
        "last step's waiting, summed", _last("waiting", "sum")
    ),
    ("Tokens/s", "A"): Check("steps: prompt_tokens", _steps_sum("prompt_tokens")),
    ("Tokens/s", "B"): Check("steps: generation_tokens", _steps_sum("generation_tokens")),
    ("Preemptions/s", "A"): Check("steps: preemptions", _steps_sum("preemptions")),
    ("Requests by finish reason and error", "A"): Check(
        "requests by finish_reason, error_type",
        _finish_reasons,
        labels=("gen_ai_response_finish_reasons", "error_type"),
    ),
    ("Tokens per request (mean)", "A"): Check(
        "mean input_tokens (ok)", _mean("input_tokens", True), rel=1e-12
    ),
    ("Tokens per request (mean)", "B"): Check(
        "mean output_tokens (ok)", _mean("output_tokens", True), rel=1e-12
    ),
    ("SLO attainment", "A"): Check(
        "share of ttft_s <= SLO", _within("ttft_s", "ttft_slo"), rel=1e-12
    ),
    ("SLO attainment", "B"): Check(
        "share of tpot_s <= SLO", _within("tpot_s", "tpot_slo"), rel=1e-12
    ),
    ("SLO attainment", "C"): Check("share of e2e_s <= SLO", _within("e2e_s", "e2e_slo"), rel=1e-12),
    ("Good requests/s (upper bound)", "A"): Check(
        "min(#ttft <= SLO, #e2e <= SLO)", _good_upper_bound
    ),
    ("Error ratio", "A"): Check("requests with error_type / all", _error_ratio),
    # the fleet row
    ("Output tokens/s per engine", "A"): Check(
        "steps: generation_tokens per engine",
        lambda v: _per_engine(v.steps, pl.col("generation_tokens").sum()),
        ENGINE,
    ),
    ("KV-cache usage per engine", "A"): Check(
        "each engine's last step's KV usage", _last("kv_cache_usage", "per engine"), ENGINE
    ),
    ("Queue depth per engine (running, waiting)", "A"): Check(
        "each engine's last step's running", _last("running", "per engine"), ENGINE
    ),
    ("Queue depth per engine (running, waiting)", "B"): Check(
        "each engine's last step's waiting", _last("waiting", "per engine"), ENGINE
    ),
    ("Time to first token per engine", "A"): Check(
        "p50 of requests.ttft_s per engine", Quantile(0.5, "ttft_s", TTFT_B, True), ENGINE
    ),
    ("Time to first token per engine", "B"): Check(
        "p99 of requests.ttft_s per engine", Quantile(0.99, "ttft_s", TTFT_B, True), ENGINE
    ),
    ("Requests/s per engine", "A"): Check(
        "requests per engine", lambda v: _per_engine(v.requests, pl.len()), ENGINE
    ),
    ("Share of requests per engine", "A"): Check(
        "each picked engine's requests / every engine's", _share(None), ENGINE, rel=1e-12
    ),
    ("Share of output tokens per engine", "A"): Check(
        "each picked engine's output tokens / every engine's",
        _share("output_tokens"),
        ENGINE,
        rel=1e-12,
    ),
    ("Slowest engine vs the fleet: p99 TTFT", "A"): Check(
        "the highest per-engine p99 of ttft_s among the picked, and its engine",
        Quantile(0.99, "ttft_s", TTFT_B, True),
        ENGINE,
        top1=True,
    ),
    ("Slowest engine vs the fleet: p99 TTFT", "B"): Check(
        "p99 of every engine's requests.ttft_s", Quantile(0.99, "ttft_s", TTFT_B, fleet=True)
    ),
}


def same(got: float, want: float, rel: float) -> bool:
    if math.isnan(want):
        return math.isnan(got)
    return got == want if rel == 0 else math.isclose(got, want, rel_tol=rel, abs_tol=1e-12)


def compare(check: Check, view: View, got: dict[Key, float]) -> str | None:
    """None when the PromQL result is the run folders' figure; else what differs."""
    want = check.want.want(view) if isinstance(check.want, Quantile) else check.want(view)
    rel = 1e-9 if isinstance(check.want, Quantile) else check.rel
    if check.top1:
        top = max(want.values())
        (key, value), *more = got.items() if got else [(None, math.nan)]
        if more or key not in {k for k, x in want.items() if x == top} or not same(value, top, rel):
            return f"got {got}, want one of {want} with the highest value"
    elif got.keys() != want.keys() or not all(same(got[k], want[k], rel) for k in want):
        return f"got {got}, want {want}"
    if isinstance(check.want, Quantile):
        for k, (lower, upper) in check.want.bucket(view).items():
            if k in got and not lower <= got[k] <= upper:
                return f"{k}: {got[k]} outside the exact quantile's bucket ({lower}, {upper}]"
    return None
