"""Shared hypothesis settings and adversarial value strategies of the fuzzing tests."""

from __future__ import annotations

import itertools
import os
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Deterministic in CI: the same examples on every run, no example database. The deadline is per
# example: a slow example fails the test (loaded 2-core machines: generous, still far from a hang).
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)

SOAK = os.environ.get("SAGELLM_OBS_SOAK", "").strip().lower() in ("1", "true", "yes")
"""``make soak``: every fuzzing test runs 20 times as many examples."""
SCALE = 20 if SOAK else 1
TIMEOUT = 300 * SCALE
"""pytest-timeout of a fuzzing test (seconds)."""


def examples(n: int) -> int:
    """``n`` examples, scaled up under ``make soak``."""
    return n * SCALE


HUGE_INTS = st.sampled_from([2**31, 2**53 + 1, 2**63, -(2**63) - 1, 2**64, 10**30, 10**400])
WEIRD_STRINGS = st.sampled_from(
    ["", " ", "NaN", "Infinity", "-Infinity", "1e999", "0x10", "-0", "\ud800", "\x00", "\u202e",
     "9" * 5000, "SPAN_KIND_SERVER", "STATUS_CODE_ERROR", "AGGREGATION_TEMPORALITY_DELTA",
     "é✓", "null", "true", "[]", "{}", "<script>", "../../etc/passwd"]
)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | HUGE_INTS
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | WEIRD_STRINGS
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3)
    ),
    max_leaves=10,
)

_ids = itertools.count()


def unique(prefix: str) -> str:
    """A name no other example of this process used."""
    return f"{prefix}-{next(_ids)}"


def nested(depth: int, leaf: Any = 0) -> Any:
    """``[[[...leaf...]]]`` ``depth`` lists deep (without recursion)."""
    out = leaf
    for _ in range(depth):
        out = [out]
    return out
