"""The PromQL of the dashboards and the rules: selectors, metric names and expression builders.

Every query filters by the dashboard's pickers: ``$job`` (one metrics path), ``$model`` and
``$engine``; names come from ``sagellm_obs.semconv``.
"""

from __future__ import annotations

from sagellm_obs import semconv as sc

# Filters every query by the dashboard's job (metrics path), model and engine pickers.
JOB_SEL = 'job=~"$job"'
STEP_SEL = f'{JOB_SEL},sagellm_engine_id=~"$engine"'
SEL = f'{STEP_SEL},gen_ai_request_model=~"$model"'
# The whole fleet (every engine of the job and model): the denominator of the imbalance panels.
FLEET_SEL = f'{JOB_SEL},gen_ai_request_model=~"$model"'
# One engine is an instance (sagellm_engine_id: a replica) and a data-parallel rank inside it
# (sagellm_engine_idx, vLLM's engine_idx; 0 without data parallelism).
BY_ENGINE = "sagellm_engine_id, sagellm_engine_idx"
ENGINE_LEGEND = "{{sagellm_engine_id}} #{{sagellm_engine_idx}}"

TTFT = sc.M_TTFT.prometheus_name
TPOT = sc.M_TPOT.prometheus_name
E2E = sc.M_REQUEST_DURATION.prometheus_name
QUEUE = sc.M_QUEUE.prometheus_name
PREFILL = sc.M_PREFILL.prometheus_name
DECODE = sc.M_DECODE.prometheus_name
TOKENS_IN = sc.M_REQUEST_INPUT_TOKENS.prometheus_name
TOKENS_OUT = sc.M_REQUEST_OUTPUT_TOKENS.prometheus_name
REQS = sc.M_REQUESTS.prometheus_name
RUNNING = sc.M_RUNNING.prometheus_name
WAITING = sc.M_WAITING.prometheus_name
PQ = sc.M_PREFIX_QUERIES.prometheus_name
PH = sc.M_PREFIX_HITS.prometheus_name
GEN = sc.M_GENERATION_TOKENS.prometheus_name
PROMPT = sc.M_PROMPT_TOKENS.prometheus_name
PREEMPT = sc.M_PREEMPTIONS.prometheus_name


def either(spec: sc.MetricSpec, sel: str) -> str:
    """A selector of ``spec`` under both its /metrics and its collector name, when they differ."""
    a, b = spec.prometheus_name, spec.collector_prometheus_name
    return f"{a}{{{sel}}}" if a == b else f"({a}{{{sel}}} or {b}{{{sel}}})"


def le_bound(value: float) -> str:
    """A bucket bound as the collector writes ``le`` (``1``, ``0.5``); our /metrics writes ``1.0``,
    so queries match both (:func:`le_match`)."""
    return f"{value:g}"


def le_match(var: str) -> str:
    """``le`` matcher for an SLO picker: both spellings of a whole bound (``1`` and ``1.0``)."""
    return f'le=~"${{{var}}}|${{{var}}}.0"'


def attainment(metric: str, var: str) -> str:
    """Share of requests at or under the picked SLO (the bucket whose bound is the SLO)."""
    return (
        f"sum(rate({metric}_bucket{{{SEL},{le_match(var)}}}[$__rate_interval])) / "
        f"sum(rate({metric}_count{{{SEL}}}[$__rate_interval]))"
    )


def by_engine_quantile(q: float, sel: str = SEL) -> str:
    """The ``q`` quantile of TTFT of each engine (replica and rank) under ``sel``."""
    return (
        f"histogram_quantile({q}, sum by ({BY_ENGINE}, le) "
        f"(rate({TTFT}_bucket{{{sel}}}[$__rate_interval])))"
    )


def share(metric: str) -> str:
    """Each picked engine's share of the fleet's (every engine's) rate of ``metric``."""
    return (
        f"sum by ({BY_ENGINE}) (rate({metric}{{{SEL}}}[$__rate_interval])) / "
        f"scalar(sum(rate({metric}{{{FLEET_SEL}}}[$__rate_interval])))"
    )
