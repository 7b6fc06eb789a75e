"""The warm-cache rule on known answers (real server: tests/server)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import polars as pl

from sagellm_obs import semconv as sc
from sagellm_obs.frames.schemas import ATTRIBUTES
from sagellm_obs.frames.warm_cache import WarmCache, warm_cache, warm_cache_of_clients

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _frames(
    rows: list[tuple[str, float, list[str], int, str]], scheduled: dict[str, float] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(request id, arrival s, block hashes, cached tokens, engine) -> requests, spans frames;
    each request is queued 1 ms after it arrives and scheduled at 10 ms (or ``scheduled``)."""
    at = {r[0]: T0 + timedelta(seconds=r[1]) for r in rows}
    sched = {k: T0 + timedelta(seconds=v) for k, v in (scheduled or {}).items()}
    req = pl.DataFrame(
        {
            "request_id": [r[0] for r in rows],
            "span_id": [f"s-{r[0]}" for r in rows],
            "arrival": [at[r[0]] for r in rows],
            "cached_tokens": [r[3] for r in rows],
            "engine_id": [r[4] for r in rows],
            "engine_idx": [0] * len(rows),
        }
    )
    server = pl.DataFrame(
        {
            "span_id": [f"s-{r[0]}" for r in rows],
            "parent_span_id": [None] * len(rows),
            "name": ["text_completion tiny"] * len(rows),
            "kind": ["SERVER"] * len(rows),
            "request_id": [r[0] for r in rows],
            "start": [at[r[0]] for r in rows],
            "end": [at[r[0]] + timedelta(seconds=1) for r in rows],
            "attributes": [
                [{"key": sc.SAGELLM_PREFIX_HASH, "value": json.dumps(r[2])}] for r in rows
            ],
        },
        schema_overrides={"attributes": ATTRIBUTES, "parent_span_id": pl.String},
    )
    queue = pl.DataFrame(
        {
            "span_id": [f"q-{r[0]}" for r in rows],
            "parent_span_id": [f"s-{r[0]}" for r in rows],
            "name": [sc.SPAN_QUEUE] * len(rows),
            "kind": ["INTERNAL"] * len(rows),
            "request_id": [None] * len(rows),
            "start": [at[r[0]] + timedelta(milliseconds=1) for r in rows],
            "end": [sched.get(r[0], at[r[0]] + timedelta(milliseconds=10)) for r in rows],
            "attributes": [[] for _ in rows],
        },
        schema_overrides={"attributes": ATTRIBUTES, "request_id": pl.String},
    )
    return req, pl.concat([server, queue])


def test_hits_on_the_runs_own_blocks_are_not_inherited() -> None:
    req, spans = _frames(
        [
            ("a", 0.0, ["p1", "p2", "a3"], 0, "e"),  # first of its prefix: misses
            ("b", 1.0, ["p1", "p2", "b3"], 256, "e"),  # hits a's two blocks: legitimate
            ("c", 2.0, ["q1"], 0, "e"),
        ]
    )
    check = warm_cache(req, spans)
    assert check == WarmCache(checked=3, first_requests=1, basis="prefix blocks")
    assert not check.warm_start


def test_a_first_request_that_hits_is_a_warm_start() -> None:
    req, spans = _frames(
        [
            ("a", 0.0, ["p1", "p2", "a3"], 256, "e"),  # nothing sent before: inherited
            ("b", 1.0, ["p1", "p2", "b3"], 384, "e"),  # a sent p1 p2, not b3: 128 inherited
            ("c", 2.0, ["q1", "q2"], 128, "other"),  # another engine never saw q1
        ]
        + [(f"x{i}", 3.0 + i, [f"x{i}"], 0, "e") for i in range(7)]
    )
    check = warm_cache(req, spans)
    assert check.first_requests == 1
    assert check.warm_start and check.warm_first == 1
    assert check.warm_requests == 3
    assert check.inherited_tokens == 256 + 128 + 128
    assert check.text().startswith("YES: 1 of the first 1 requests and 3 in all hit 512")
    # Frames.scan_spans() (what the run summary passes): the same check from a LazyFrame
    assert warm_cache(req, spans.lazy()) == check


def test_a_later_arrival_scheduled_first_counts_as_sent() -> None:
    """b arrived 1 ms after a but EngineCore scheduled it first: a may hit b's blocks."""
    rows = [("a", 0.0, ["p1", "a2"], 128, "e"), ("b", 0.001, ["p1", "b2"], 0, "e")]
    req, spans = _frames(rows, scheduled={"a": 0.02, "b": 0.005})
    assert warm_cache(req, spans).warm_requests == 0
    # scheduled in arrival order, a's hit on p1 came from before the run
    req, spans = _frames(rows)
    assert warm_cache(req, spans).warm_start


def test_client_rows_by_family() -> None:
    rows = [
        {"request_id": "a", "client_start_unix_nano": 1, "family": "f", "cached_tokens": 0},
        {"request_id": "b", "client_start_unix_nano": 2, "family": "f", "cached_tokens": 384},
        {"request_id": "c", "client_start_unix_nano": 3, "family": None, "cached_tokens": 0},
        {"request_id": "d", "client_start_unix_nano": 4, "family": "g", "cached_tokens": 128},
        {"request_id": "e", "client_start_unix_nano": 5, "family": "g"},  # not reported
    ]
    for row in rows:  # each first token came back at once, before the next was sent
        row["client_ttft_s"] = 0.0
    check = warm_cache_of_clients(rows)
    assert (check.checked, check.first_requests, check.warm_first) == (4, 1, 0)
    assert (check.warm_requests, check.inherited_tokens) == (1, 128)
    assert check.word() == "no (inherited hits later in the run)"
    assert warm_cache_of_clients([]).word() == "not checked"


def _sent(ms: float, ttft_s: float, family: str, cached: int) -> dict[str, Any]:
    """A client row sent ``ms`` after the run's first."""
    return {
        "client_start_unix_nano": int(ms * 1_000_000),
        "client_ttft_s": ttft_s,
        "family": family,
        "cached_tokens": cached,
    }


def test_client_rows_sent_together_share_their_family() -> None:
    """Two of a family sent 1 ms apart: the server prefilled the later one first and the first
    hit its blocks (seen in a real run). Not warm; a hit with no sibling in flight still is."""
    rows = [_sent(0, 0.065, "f", 384), _sent(1, 0.051, "f", 0), _sent(66, 0.05, "g", 0)]
    assert warm_cache_of_clients(rows).warm_requests == 0
    # the sibling was sent after the first token came back: the hit came from before the run
    rows[1]["client_start_unix_nano"] = 70_000_000
    check = warm_cache_of_clients(rows)
    assert check.warm_first == 1 and check.inherited_tokens == 384


def test_client_rows_sent_together_that_all_hit_came_warm() -> None:
    """A rerun sends two of a family 1 ms apart and both hit: whichever the server prefilled
    first had no sibling blocks to hit, so one hit came from before the run (seen in a real run:
    the family was missed when a sibling in flight excused both)."""
    rows = [
        _sent(0, 0.065, "f", 384),
        _sent(1, 0.051, "f", 256),
        _sent(60, 0.05, "f", 384),  # sent after the family's first token came back: may hit
    ]
    check = warm_cache_of_clients(rows)
    assert (check.warm_first, check.warm_requests, check.inherited_tokens) == (1, 1, 256)
    # one of the opening group without a count may be the one prefilled first: not judged warm
    del rows[1]["cached_tokens"]
    check = warm_cache_of_clients(rows)
    assert (check.checked, check.warm_requests) == (2, 0)
    # an answer without text is bounded by its end: the third is outside the opening group
    rows[1].update(cached_tokens=256, client_ttft_s=None, client_e2e_s=0.04)
    rows[2]["cached_tokens"] = 0
    assert warm_cache_of_clients(rows).inherited_tokens == 256
    # a failed request may never have been scheduled: its end bounds nothing, so the third (no
    # hit) joins the group, and it may be the one prefilled first
    rows[1]["error"] = 500
    assert warm_cache_of_clients(rows).warm_requests == 0
