"""A real run with a small KV cache: vLLM's KV events, recorded, against vLLM's own counters.

The tiny model, a 20 MiB KV cache (40 blocks of 128 tokens) and the phased workload: shared
prefixes warm the cache, long unrelated prompts fill it and evict, shared prefixes come back.
The records are checked against what vLLM counts elsewhere: each request's ``num_cached_tokens``
(its ``RequestOutput``), the prefix-cache hits of the step records (its stat logger), and the
prefix hashes our request spans carry.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sagellm_obs import configure
from sagellm_obs.engine import Engine
from sagellm_obs.engine.kv_events import KVEventCounts
from sagellm_obs.frames import block_lifetimes, blocks_of_requests, kv_events, load
from sagellm_obs.protocol import KVHookPayload
from sagellm_obs.store import iter_jsonl, layout
from sagellm_obs.workload.phases import phases

pytestmark = [pytest.mark.engine, pytest.mark.slow]

BLOCK = 128


@dataclass
class KVRun:
    run_dir: Path
    outputs: dict[str, Any] = field(default_factory=dict)
    counts: KVEventCounts | None = None
    seconds: float = 0.0
    requests: int = 0


@pytest.fixture(scope="module")
def kv_run(tmp_path_factory: pytest.TempPathFactory) -> KVRun:
    run = KVRun(tmp_path_factory.mktemp("kv-run") / "run")
    tel = configure(
        run_dir=run.run_dir,
        engine_id="kv-engine",
        otlp_endpoint=False,
        prometheus_port=False,
        make_current=False,
    )
    engine = Engine(
        "tiny", telemetry=tel, in_process=True, kv_cache_memory_bytes=20 * 2**20, kv_events=True
    )
    try:
        engine.engine.on_request_output = lambda out: run.outputs.__setitem__(out.request_id, out)
        items = phases(n_requests=40, max_tokens=8)
        run.requests = len(items)
        started = time.monotonic()
        # One phase after the other, each phase's requests together.
        for _, group in itertools.groupby(items, key=lambda w: (w.request.metadata or {})["phase"]):
            engine.generate_batch([w.request for w in group])
        run.seconds = time.monotonic() - started
        consumer = engine.engine.kv_events
        assert consumer is not None
        consumer.drain()
        run.counts = consumer.counts
    finally:
        engine.close()
        tel.shutdown()
    return run


def test_records_are_hook_payloads_and_nothing_was_dropped(kv_run: KVRun) -> None:
    files = layout.data_files(kv_run.run_dir, layout.KV_EVENTS)
    lines = [obj for f in files for _, obj in iter_jsonl(f)]
    assert lines
    for obj in lines[:50]:
        KVHookPayload.model_validate(obj)
    assert kv_run.counts is not None
    assert kv_run.counts.dropped_batches == 0
    assert kv_run.counts.records == len(lines)


def test_reuse_matches_vllm_cached_tokens_per_request(kv_run: KVRun) -> None:
    ev = kv_events(kv_run.run_dir)
    reused = ev.filter(pl.col("kind") == "reused").group_by("request_id").agg(pl.len())
    ours = {r: n * BLOCK for r, n in reused.rows()}
    theirs = {r: o.num_cached_tokens for r, o in kv_run.outputs.items() if o.num_cached_tokens}
    assert theirs, "the workload should hit the prefix cache"
    assert ours == theirs


def test_reuse_matches_step_prefix_hits(kv_run: KVRun) -> None:
    frames = load(kv_run.run_dir)
    hits = int(frames.steps["prefix_hits"].sum())
    ev = kv_events(kv_run.run_dir)
    assert ev.filter(pl.col("kind") == "reused")["num_tokens"].sum() == hits


def test_the_cache_filled_and_evicted(kv_run: KVRun) -> None:
    ev = kv_events(kv_run.run_dir)
    kinds = Counter(ev["kind"].to_list())
    assert kinds["removed"] > 0
    life = block_lifetimes(ev)
    evicted = life.filter(pl.col("evicted"))
    assert evicted.height == kinds["removed"]  # every removal ends a residency we saw start
    assert (evicted["lifetime_s"] >= 0).all()
    # Blocks stored per request: the full blocks of its KV (prompt + output - 1 tokens) minus
    # the ones it found cached. A preempted request frees its blocks and computes (stores) some
    # again when it resumes: at least as many then.
    stored = Counter(ev.filter(pl.col("kind") == "stored")["request_id"].to_list())
    # Output counts from the request spans: the engine streams deltas, so vLLM's last
    # RequestOutput holds only the last tokens.
    requests = load(kv_run.run_dir).requests
    n_out = dict(requests.select("request_id", "output_tokens").rows())
    exact = 0
    for rid, out in kv_run.outputs.items():
        kv_tokens = len(out.prompt_token_ids) + n_out[rid] - 1
        expected = kv_tokens // BLOCK - (out.num_cached_tokens or 0) // BLOCK
        if out.metrics.num_preemptions:
            assert stored[rid] >= expected, rid
        else:
            assert stored[rid] == expected, rid
            exact += 1
    assert exact > len(kv_run.outputs) // 2


def test_blocks_join_requests_by_prefix_hash(kv_run: KVRun) -> None:
    frames = load(kv_run.run_dir)
    ev = kv_events(kv_run.run_dir)
    joined = blocks_of_requests(block_lifetimes(ev), frames.spans)
    assert joined.height > 0
    # Every request's span lists the hashes of its full prompt blocks; each such block was stored
    # or reused by that request, so each request joins all its prompt blocks.
    per_request = joined.group_by("request_id").agg(pl.col("prefix_hash").n_unique())
    for rid, n in per_request.rows():
        assert n == len(kv_run.outputs[rid].prompt_token_ids) // BLOCK, rid
    assert per_request.height == sum(
        1 for o in kv_run.outputs.values() if len(o.prompt_token_ids) >= BLOCK
    )


def test_kv_events_survive_save_and_the_parquet_cache(kv_run: KVRun, tmp_path: Path) -> None:
    """The real run's kv_events through Frames.save() and through the whole-frames cache of a
    folder holding the run's files without its manifest: equal frames, every line a row."""
    files = layout.data_files(kv_run.run_dir, layout.KV_EVENTS)
    lines = sum(1 for f in files for _ in iter_jsonl(f))
    run = load(kv_run.run_dir)
    assert run.kv_events.height == lines
    assert (run.kv_events["kind"] == "removed").any()

    back = load(run.save(tmp_path / "saved"))
    assert_frame_equal(back.kv_events, run.kv_events)

    plain = tmp_path / "plain"
    plain.mkdir()
    for f in kv_run.run_dir.glob("*.jsonl"):
        shutil.copy2(f, plain / f.name)
    built, cached = load(plain), load(plain)
    assert not built.from_cache and cached.from_cache
    assert_frame_equal(cached.kv_events, built.kv_events)
    no_run_id = run.kv_events.with_columns(run_id=pl.lit(None, pl.Categorical))  # no manifest there
    assert_frame_equal(built.kv_events, no_run_id)


def test_cost_of_the_consumer(kv_run: KVRun) -> None:
    """Reported, not asserted on time: records per request and CPU of the consumer thread."""
    assert kv_run.counts is not None
    per_request = kv_run.counts.records / kv_run.requests
    cpu_ms = 1000 * kv_run.counts.cpu_seconds / kv_run.requests
    print(
        f"\nkv events: {kv_run.counts.records} records ({per_request:.1f}/request), "
        f"{kv_run.counts.batches} batches, consumer CPU {cpu_ms:.3f} ms/request, "
        f"run {kv_run.seconds:.1f} s"
    )
    assert per_request > 0
