"""The ``kv_events`` frame (vLLM's KV cache events of a run) and what it says about blocks.

>>> from sagellm_obs.frames import kv_events, block_lifetimes
>>> ev = kv_events("sagellm-runs/20260101T000000Z-abc123")  # doctest: +SKIP
>>> block_lifetimes(ev).sort("reuses", descending=True).head()  # doctest: +SKIP

A run folder holds these rows only when its engine ran with ``EngineConfig(kv_events=True)``
(:mod:`sagellm_obs.engine.kv_events`); each file is read like a steps file, through its columnar
copy. :func:`block_lifetimes` turns the events into one row per block residency (stored ...
removed), :func:`kv_events_per_step` counts them per engine step next to the step's KV usage, and
:func:`blocks_of_requests` joins residencies to the requests whose spans list the block's prefix
hash.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from sagellm_obs import semconv as sc
from sagellm_obs.frames import files
from sagellm_obs.frames.schemas import KV_EVENTS, attribute, check_schema, conform
from sagellm_obs.store.reader import Errors

__all__ = [
    "BLOCK_LIFETIMES",
    "block_lifetimes",
    "blocks_of_requests",
    "kv_events",
    "kv_events_per_step",
]

BLOCK_LIFETIMES = pl.Schema(
    {
        "engine_idx": pl.Int64(),
        "group_idx": pl.Int64(),
        "block_hash": pl.String(),
        "prefix_hash": pl.String(),
        "stored": pl.Datetime("ns", "UTC"),
        "removed": pl.Datetime("ns", "UTC"),  # null: still cached at the end of the run
        "lifetime_s": pl.Float64(),  # removed - stored; null while cached
        "reuses": pl.UInt32(),  # prefix-cache hits on the block during this residency
        "stored_by": pl.String(),  # request that filled the block
        "reused_by": pl.List(pl.String()),  # requests that hit it, in time order
        "evicted": pl.Boolean(),  # removed (not still cached, not cleared)
    }
)
"""One row per residency of a block in the prefix cache: :func:`block_lifetimes`."""


def kv_events(
    source: str | os.PathLike[str], *, errors: Errors = "raise", cache: bool = True
) -> pl.DataFrame:
    """The ``kv_events`` frame of a run folder (empty when it has no kv-events files).

    For a run folder this is ``scan(source).kv_events``: :func:`~sagellm_obs.frames.load` and
    :func:`~sagellm_obs.frames.scan` carry the frame on ``Frames.kv_events``.

    Args:
        source: A run folder, or one kv-events file.
        errors: ``"raise"`` on a malformed line, or ``"skip"`` it.
        cache: Read and write the columnar copies (run folders only).

    Returns:
        Rows in :data:`~sagellm_obs.frames.schemas.KV_EVENTS`, sorted by time.
    """
    path = Path(source)
    if path.is_file():
        built, _ = files.build_file(
            path, files.KV_EVENTS_KIND, path.parent, run_id=None, errors=errors
        )
        return check_schema(built["kv_events"], KV_EVENTS, "kv_events")
    from sagellm_obs.frames.load import scan  # load imports this module's package

    return scan(path, errors=errors, cache=cache).kv_events.collect()


def block_lifetimes(events: pl.DataFrame) -> pl.DataFrame:
    """One row per block residency: when it was stored and removed, and who reused it.

    A residency starts at a ``stored`` event of a block hash and ends at the next ``removed``
    (evicted) or ``cleared`` (cache reset) event of that hash; ``reused`` events in between are
    its prefix-cache hits.

    Args:
        events: A ``kv_events`` frame.

    Returns:
        Rows in :data:`BLOCK_LIFETIMES`, by store time.
    """
    blocks = events.filter(pl.col("kind") != sc.KV_CLEARED)
    clears = events.filter(pl.col("kind") == sc.KV_CLEARED).select("engine_idx", "time")
    keys = ["engine_idx", "group_idx", "block_hash"]
    # A clear ends every residency of its engine: give each block row the number of clears
    # before it, and make that part of the residency key.
    if clears.height:
        blocks = blocks.sort("time").join_asof(
            clears.sort("time").with_columns(pl.int_range(1, pl.len() + 1).alias("_epoch")),
            on="time",
            by="engine_idx",
            strategy="backward",
            check_sortedness=False,  # both sorted by time above
        )
    else:
        blocks = blocks.with_columns(pl.lit(None, pl.Int64).alias("_epoch"))
    blocks = blocks.sort("time", maintain_order=True).with_columns(
        # residency number: stored events seen so far for this block (per clear epoch)
        (pl.col("kind") == sc.KV_STORED).cum_sum().over([*keys, "_epoch"]).alias("_res")
    )
    stored = pl.col("kind") == sc.KV_STORED
    reused = pl.col("kind") == sc.KV_REUSED
    removed = pl.col("kind") == sc.KV_REMOVED
    out = (
        blocks.filter(pl.col("_res") > 0)
        .group_by([*keys, "_epoch", "_res"], maintain_order=True)
        .agg(
            pl.col("prefix_hash").drop_nulls().first(),
            pl.col("time").filter(stored).first().alias("stored"),
            pl.col("time").filter(removed).first().alias("removed"),
            reused.sum().alias("reuses"),
            pl.col("request_id").filter(stored).first().alias("stored_by"),
            pl.col("request_id").filter(reused).drop_nulls().alias("reused_by"),
            removed.any().alias("evicted"),
        )
        .with_columns(
            ((pl.col("removed") - pl.col("stored")).dt.total_nanoseconds() / 1e9).alias(
                "lifetime_s"
            )
        )
        .sort("stored", maintain_order=True)
    )
    return conform(out, BLOCK_LIFETIMES)


def kv_events_per_step(events: pl.DataFrame, steps: pl.DataFrame) -> pl.DataFrame:
    """Stored, reused and removed blocks per engine step, next to the step's KV usage.

    vLLM publishes a step's events right after scheduling it and stamps the batch then; our step
    record is taken when the step's outputs are processed, a little later. Each event is
    assigned to the first step record at or after it (of the same engine).

    Args:
        events: A ``kv_events`` frame.
        steps: The run's ``steps`` frame.

    Returns:
        ``steps``' ``time``, ``engine_idx``, ``step`` and ``kv_cache_usage`` with the columns
        ``stored``, ``reused`` and ``removed`` (0 for steps without events).
    """
    base = steps.select("time", "engine_idx", "step", "kv_cache_usage").sort("time")
    kinds = (sc.KV_STORED, sc.KV_REUSED, sc.KV_REMOVED)
    if events.height == 0:
        return base.with_columns(pl.lit(0, pl.UInt32).alias(k) for k in kinds)
    tagged = (
        events.filter(pl.col("kind").is_in(kinds))
        .select("time", "engine_idx", "kind")
        .sort("time")
        .join_asof(
            base.select("time", "engine_idx", "step").rename({"time": "_step_time"}),
            left_on="time",
            right_on="_step_time",
            by="engine_idx",
            strategy="forward",
            check_sortedness=False,  # both sorted by time above
        )
    )
    counts = tagged.group_by("engine_idx", "step").agg(
        (pl.col("kind") == k).sum().alias(k) for k in kinds
    )
    return base.join(counts, on=["engine_idx", "step"], how="left").with_columns(
        pl.col(k).fill_null(0) for k in kinds
    )


def blocks_of_requests(lifetimes: pl.DataFrame, spans: pl.DataFrame) -> pl.DataFrame:
    """Block residencies joined to the requests whose prompts contain the block.

    The join is on our prefix hash: a request's SERVER span lists the hashes of its full prompt
    blocks (``sagellm.prefix.block_hashes``) and a kv-events block carries the same hash when its
    size is 128 tokens (vLLM's CPU default) and its parent was seen. vLLM's own block hashes use
    another function, so they never match ours directly. Blocks holding generated tokens appear
    in no span and do not join; ``stored_by``/``reused_by`` name requests without this join.

    Args:
        lifetimes: :func:`block_lifetimes` rows.
        spans: A ``spans`` frame.

    Returns:
        One row per (residency, request whose prompt holds the block): the residency's columns
        plus ``request_id``.
    """
    per_block = (
        spans.filter(pl.col("kind") == "SERVER", pl.col("request_id").is_not_null())
        .select(
            "request_id",
            attribute(sc.SAGELLM_PREFIX_HASH)
            .str.json_decode(pl.List(pl.String))
            .alias("prefix_hash"),
        )
        .explode("prefix_hash")
        .drop_nulls("prefix_hash")
        .unique(maintain_order=True)
    )
    return lifetimes.filter(pl.col("prefix_hash").is_not_null()).join(
        per_block, on="prefix_hash", how="inner"
    )
