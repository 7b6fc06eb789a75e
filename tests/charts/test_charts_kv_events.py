"""Block lifetime against reuse, and block events next to KV usage, checked on their specs."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from chart_frames import START, is_no_data, rows_of, units_with_mark

from sagellm_obs.charts import block_lifetime_reuse, evictions_vs_kv_usage
from sagellm_obs.frames import BLOCK_LIFETIMES, KV_EVENTS, block_lifetimes, kv_events_per_step
from sagellm_obs.frames.schemas import STEPS, conform

T = pl.Datetime("ns", "UTC")


def _events() -> pl.DataFrame:
    """Block a: stored, hit twice, evicted after 2 s; block b: stored, never evicted."""
    rows = [
        (0.0, "stored", "r1", "a"),
        (0.5, "reused", "r2", "a"),
        (1.0, "reused", "r3", "a"),
        (1.0, "stored", "r3", "b"),
        (2.0, "removed", None, "a"),
        (3.0, "stored", "r4", "c"),
    ]
    return conform(
        pl.DataFrame(
            {
                "time": [START + timedelta(seconds=t) for t, *_ in rows],
                "kind": [k for _, k, _, _ in rows],
                "request_id": [r for _, _, r, _ in rows],
                "block_hash": [h for *_, h in rows],
                "engine_idx": [0] * len(rows),
                "group_idx": [0] * len(rows),
                "num_tokens": [128] * len(rows),
            }
        ).with_columns(pl.col("time").cast(T)),
        KV_EVENTS,
    )


def test_block_lifetime_reuse_spec() -> None:
    life = block_lifetimes(_events())
    assert life.schema == BLOCK_LIFETIMES
    spec = block_lifetime_reuse(life).to_dict()
    (unit,) = units_with_mark(spec, "circle")
    assert unit["encoding"]["x"]["field"] == "lifetime_s"
    assert unit["encoding"]["y"]["field"] == "reuses"
    got = {
        r["block_hash"]: (r["lifetime_s"], r["reuses"], r["status"]) for r in rows_of(spec, unit)
    }
    # a: evicted after 2 s with 2 hits; b and c: still cached, lifetime counted to the last event
    assert got == {
        "a": (2.0, 2, "evicted"),
        "b": (2.0, 0, "not evicted"),
        "c": (0.0, 0, "not evicted"),
    }


def test_evictions_vs_kv_usage_spec() -> None:
    steps = conform(
        pl.DataFrame(
            {
                "time": [START + timedelta(seconds=s) for s in (0.2, 1.2, 2.2, 3.2)],
                "engine_idx": [0] * 4,
                "step": [1, 2, 3, 4],
                "kv_cache_usage": [0.25, 0.5, 0.75, 1.0],
            }
        ).with_columns(pl.col("time").cast(T)),
        STEPS,
    )
    per = kv_events_per_step(_events(), steps)
    assert per.select("step", "stored", "reused", "removed").rows() == [
        (1, 1, 0, 0),
        (2, 1, 2, 0),
        (3, 0, 0, 1),
        (4, 1, 0, 0),
    ]
    spec = evictions_vs_kv_usage(per, every="1s").to_dict()
    assert len(spec["vconcat"]) == 2
    (line,) = units_with_mark(spec, "line")
    assert line["encoding"]["y"]["field"] == "usage"
    (bars,) = units_with_mark(spec, "bar")
    assert bars["transform"][0]["fold"] == ["stored", "reused", "removed"]
    assert bars["encoding"]["color"]["scale"]["domain"] == ["stored", "reused", "removed"]
    rows = rows_of(spec, bars)
    assert [r["removed"] for r in rows] == [0, 0, 1, 0]
    assert [r["usage"] for r in rows] == [0.25, 0.5, 0.75, 1.0]


def test_empty_frames_give_no_data() -> None:
    assert is_no_data(block_lifetime_reuse(pl.DataFrame(schema=BLOCK_LIFETIMES)).to_dict())
    empty_steps = pl.DataFrame(schema=STEPS)
    per = kv_events_per_step(pl.DataFrame(schema=KV_EVENTS), empty_steps)
    assert is_no_data(evictions_vs_kv_usage(per).to_dict())
