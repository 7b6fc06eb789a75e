"""The request span's attribute text from its template against the dict's generic text."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from sagellm_obs.protocol.timing import ClockAnchor
from sagellm_obs.store.otlp_text import attributes_text
from sagellm_obs.telemetry import RequestRecord
from sagellm_obs.telemetry.attributes import ALWAYS, request_attributes, request_attributes_text

MakeRecord = Callable[..., RequestRecord]


class Reason(str, enum.Enum):
    LENGTH = "length"


OPTIONAL: dict[str, Any] = {
    "engine_idx": 1,
    "max_tokens": 7,
    "temperature": 0.0,
    "top_p": 1.0,
    "top_k": 40,
    "seed": -1,
    "error_type": "Cancelled",
    "error_code": "INTERNAL ✓",
    "input_messages": '[{"role":"user","parts":[{"content":"héllo \\"q\\" \\n"}]}]',
    "output_messages": "\u2028</x>",
    "cancelled": True,
    "clock_issues": ["x < y", "ü"],
    "prompt_token_ids": list(range(300)),
}
NONE = {"max_tokens": None, "temperature": None, "top_p": None}
CASES: dict[str, dict[str, Any]] = {
    "usual": {},
    "no optional": NONE,
    **{f"only {k}": {**NONE, k: v} for k, v in OPTIONAL.items()},
    "every optional": OPTIONAL,
    "non-ASCII and quotes": {
        "model": 'modèle/"q" ✓',
        "request_id": "req\n\u2028é",
        "trace_id": "трасса",
        "engine_id": "e\\1",
        "finish_reason": "stop ü",
    },
    "extremes": {"prompt_tokens": 2**63 - 1, "cached_tokens": -(2**62), "queue": 1e-300},
    "tiny and huge floats": {"tpot": 6.7e-07, "e2e": 1e16, "decode": -0.0},
    "NaN": {"tpot": math.nan},
    "an infinity": {"ttft": math.inf},
    "NaN in an optional": {"temperature": math.nan},
    "a str enum": {"finish_reason": Reason.LENGTH},
    "a float subclass": {"queue": type("Seconds", (float,), {})(0.25)},
    "a Decimal": {"seed": Decimal(7)},
    "an int temperature": {"temperature": 1},
    "a bool token count": {"output_tokens": True},
    "no model": {"model": None},
    "a stream flag of 1": {"stream": 1},
}


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_request_attributes_text_is_the_dicts_text(
    records: MakeRecord, overrides: dict[str, Any]
) -> None:
    r = records(ClockAnchor.now(), 3, **overrides)
    attrs = request_attributes(r)
    # The second time from the cached template.
    for _ in range(2):
        assert request_attributes_text(r) == (attributes_text(attrs), len(attrs))


def test_every_request_span_has_the_fixed_attributes_first(records: MakeRecord) -> None:
    attrs = request_attributes(records(ClockAnchor.now(), 1, **NONE))
    assert list(attrs) == [key for key, _ in ALWAYS]
