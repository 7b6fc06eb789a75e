"""Frames built from the declared schemas, and helpers to read chart specs.

Frames go through ``sagellm_obs.frames.schemas.conform`` so they always have exactly the
loader's columns and dtypes: a schema change shows up here, not as charts passing on stale frames.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import polars as pl

# The million-row benchmark and these tests draw the same synthetic frames (re-exported).
from benchmarks.charts import START as START
from benchmarks.charts import synthetic_requests as synthetic_requests
from benchmarks.charts import synthetic_steps as synthetic_steps
from sagellm_obs.frames.schemas import REQUESTS, STEPS, conform, empty


def empty_requests() -> pl.DataFrame:
    return empty(REQUESTS)


def empty_steps() -> pl.DataFrame:
    return empty(STEPS)


def requests_frame(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """A requests frame from a few hand-written rows (missing columns are null)."""
    return conform(pl.DataFrame(rows, infer_schema_length=None), REQUESTS)


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
