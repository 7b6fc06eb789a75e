"""Every panel's value is the run folders' figure: two real replicas, one real Prometheus.

Two ``sagellm-obs serve`` replicas (real vLLM on CPU, the tiny model), each with its own run
folder, serve one workload: ``run --endpoint A,B`` (round-robin), then a few more requests sent
to A alone with the openai client, so the engines' shares differ. A real Prometheus scrapes both
replicas' ``/metrics`` (job ``sagellm-obs``). Once it has scraped the last step, every target of
every panel of the generated dashboard is evaluated at that instant, with the pickers set to real
values: ``$job``, ``$model`` (the served model), ``$engine`` (All; each replica's engine id alone;
both picked) and each SLO picker option. Each value is held against the figure computed from the
replicas' run folders (``frames.load`` of each), never from Prometheus.

What is compared (the ``CHECKS`` table of ``truth_checks.py`` names each panel's figure; the fleet
is started by ``truth_fleet.py``):

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
  documented interpolation redone from bucket counts of the run folder's values
  (``truth_checks.prom_quantile``): the interpolated point inside that bucket is a function of
  the counts.

A panel target without a check fails the test, so a new panel cannot go unchecked.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.dashboards.truth_checks import CHECKS, View, compare, engine_key
from tests.dashboards.truth_fleet import ENGINE, EXTRA_ON_A, JOB, ROUND_ROBIN, Fleet, Key

pytestmark = pytest.mark.engine

BOARD = Path(__file__).parents[2] / "dashboards" / "grafana" / "sagellm-overview.json"


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
    assert fleet.on_a_alone >= EXTRA_ON_A
    assert sorted(per_engine["len"]) == [ROUND_ROBIN // 2, ROUND_ROBIN // 2 + fleet.on_a_alone]
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
            problem = compare(check, view, got)
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
            engine_key(str(e), i): {float(x) for x in part[col]}
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
