"""A chart's spec carries its bins, buckets and samples, never its input rows.

What keeps every chart within the spec-size bound at 10M requests (``benchmarks/charts.py``
measures that size): each chart reduces its frame in Polars before Altair sees it. Checked here
without big data: four times the requests must not put more rows into any chart's spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from chart_frames import synthetic_requests, synthetic_steps
from test_charts_big import CHARTS, _Frames

from sagellm_obs.charts._data import MAX_POINTS

SMALL = 6_000  # more than MAX_POINTS: a sample is already capped
assert SMALL > MAX_POINTS


def _spec_rows(spec: Mapping[str, Any]) -> int:
    return sum(len(rows) for rows in spec.get("datasets", {}).values())


@pytest.fixture(scope="module")
def rows_by_size() -> dict[int, dict[str, int]]:
    out = {}
    for n in (SMALL, 4 * SMALL):
        frames = _Frames(synthetic_requests(n, engines=2), synthetic_steps(n // 2, engines=2))
        out[n] = {name: _spec_rows(chart(frames).to_dict()) for name, chart in CHARTS.items()}
    return out


@pytest.mark.parametrize("name", CHARTS)
def test_spec_rows_do_not_grow_with_the_requests(
    rows_by_size: dict[int, dict[str, int]], name: str
) -> None:
    small, big = rows_by_size[SMALL][name], rows_by_size[4 * SMALL][name]
    assert 0 < big <= small, f"{name}: {small} spec rows at {SMALL:,} requests, {big} at 4x"
    assert big < 4 * SMALL
