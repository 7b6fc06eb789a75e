"""Frames built from the declared schemas, and helpers to read chart specs.

Frames go through ``sagellm_obs.frames.schemas.conform`` so they always have exactly the
loader's columns and dtypes: a schema change shows up here, not as charts passing on stale frames.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import polars as pl

from sagellm_obs.frames.schemas import REQUESTS, STEPS, conform, empty

START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def empty_requests() -> pl.DataFrame:
    return empty(REQUESTS)


def empty_steps() -> pl.DataFrame:
    return empty(STEPS)


def requests_frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """A requests frame from a few hand-written rows (missing columns are null)."""
    return conform(pl.DataFrame(rows, infer_schema_length=None), REQUESTS)


def _uniform(n: int, k: int) -> pl.Expr:
    """Deterministic pseudo-uniform numbers in [0, 1) per row."""
    return (pl.int_range(n).hash(seed=k) % 1_000_003).cast(pl.Float64) / 1_000_003


def synthetic_requests(n: int, *, rate: float = 1000.0, engines: int = 1) -> pl.DataFrame:
    """``n`` plausible requests arriving at ``rate`` per second, built with Polars expressions."""
    i = pl.int_range(n)
    prompt = (16 + _uniform(n, 4) * 2000).cast(pl.Int64)
    frame = pl.select(
        request_id=pl.format("req-{}", i),
        trace_id=pl.format("{}", i.hash(seed=9)),
        model=pl.lit("tiny"),
        engine_id=pl.format("engine-{}", i % engines),
        run_id=pl.lit("run-1"),
        operation=pl.lit("text_completion"),
        arrival=pl.lit(START) + pl.duration(microseconds=(i * (1e6 / rate)).cast(pl.Int64)),
        queue_s=_uniform(n, 1) ** 3 * 0.2,
        prefill_s=0.005 + _uniform(n, 2) * 0.05,
        decode_s=0.1 + _uniform(n, 3) * 0.5,
        input_tokens=prompt,
        output_tokens=(1 + _uniform(n, 5) * 255).cast(pl.Int64),
        cached_tokens=(prompt.cast(pl.Float64) * _uniform(n, 6)).floor().cast(pl.Int64),
        finish_reason=pl.lit("stop"),
        error_type=pl.when(i % 97 == 0).then(pl.lit("timeout")).otherwise(pl.lit(None)),
        cancelled=pl.lit(False),
        stream=pl.lit(True),
        source=pl.lit("sagellm"),
    ).with_columns(
        ttft_s=pl.col("queue_s") + pl.col("prefill_s"),
        inference_s=pl.col("prefill_s") + pl.col("decode_s"),
        e2e_s=pl.col("queue_s") + pl.col("prefill_s") + pl.col("decode_s"),
        tpot_s=pl.col("decode_s") / pl.max_horizontal(pl.col("output_tokens") - 1, 1),
        prefix_hit_rate=pl.col("cached_tokens") / pl.col("input_tokens"),
    )
    return conform(frame, REQUESTS)


def synthetic_steps(n: int, *, every_ms: float = 10.0, engines: int = 1) -> pl.DataFrame:
    """``n`` engine steps ``every_ms`` apart (round-robin over ``engines``)."""
    i = pl.int_range(n)
    frame = pl.select(
        time=pl.lit(START) + pl.duration(microseconds=(i * every_ms * 1000).cast(pl.Int64)),
        engine_id=pl.format("engine-{}", i % engines),
        run_id=pl.lit("run-1"),
        step=i // engines,
        running=(_uniform(n, 11) * 16).cast(pl.Int64),
        waiting=(_uniform(n, 12) ** 2 * 8).cast(pl.Int64),
        kv_cache_usage=_uniform(n, 13),
        prefix_queries=(_uniform(n, 14) * 512).cast(pl.Int64),
        prompt_tokens=(_uniform(n, 16) * 512).cast(pl.Int64),
        generation_tokens=(_uniform(n, 17) * 16).cast(pl.Int64),
        preemptions=pl.lit(0, pl.Int64),
        finished=(_uniform(n, 18) * 2).cast(pl.Int64),
    ).with_columns(
        prefix_hits=(pl.col("prefix_queries").cast(pl.Float64) * _uniform(n, 15)).cast(pl.Int64),
        cached_prompt_tokens=pl.col("prompt_tokens") // 2,
    )
    frame = frame.with_columns(
        prefix_hit_rate=pl.when(pl.col("prefix_queries") > 0).then(
            pl.col("prefix_hits") / pl.col("prefix_queries")
        )
    )
    return conform(frame, STEPS)


# --- spec helpers -------------------------------------------------------------------------------


def units(spec: Mapping[str, Any], data: Any = None) -> Iterator[dict[str, Any]]:
    """Every unit view (a dict with a ``mark``) in a spec, depth first, with its data resolved
    from the nearest ancestor that declares one (Altair hoists shared data to the parent)."""
    data = spec.get("data", data)
    if "mark" in spec:
        yield {**spec, "data": data}
    for key in ("layer", "hconcat", "vconcat", "concat"):
        for child in spec.get(key, []):
            yield from units(child, data)
    if "spec" in spec:
        yield from units(spec["spec"], data)


def mark_type(unit: Mapping[str, Any]) -> str:
    mark = unit["mark"]
    return str(mark["type"] if isinstance(mark, dict) else mark)


def rows_of(spec: Mapping[str, Any], unit: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The inline rows a unit view plots (looked up in the top-level ``datasets``)."""
    data = unit.get("data")
    if data is None:
        return []
    if "values" in data:
        return list(data["values"])
    return list(spec["datasets"][data["name"]])


def units_with_mark(spec: Mapping[str, Any], mark: str) -> list[dict[str, Any]]:
    return [u for u in units(spec) if mark_type(u) == mark]


def is_no_data(spec: Mapping[str, Any], view: Mapping[str, Any] | None = None) -> bool:
    """Whether ``view`` (default: the whole spec) is a "no data" text chart."""
    texts = [u for u in units(view or spec) if mark_type(u) == "text"]
    return any(r.get("message", "").startswith("no ") for u in texts for r in rows_of(spec, u))
