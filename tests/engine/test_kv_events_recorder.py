"""KV event records: vLLM's own event classes and publisher in, sageLLM hook payloads out.

No engine here: the events are built with vLLM's ``BlockStored``/``BlockRemoved``/
``AllBlocksCleared`` and, for the socket path, published by vLLM's own ``ZmqEventPublisher``.
Every record must parse as the published ``isagellm-protocol`` ``KVHookPayload`` and as ours.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import sagellm_obs.protocol as p
from sagellm_obs import semconv as sc
from sagellm_obs.engine.kv_events import KVEventConsumer, KVRecorder, hash_hex, rank_endpoint
from sagellm_obs.frames import block_lifetimes, kv_events, kv_events_per_step
from sagellm_obs.frames.schemas import KV_EVENTS, check_schema
from sagellm_obs.store import RunStore, layout
from sagellm_obs.telemetry.attributes import prefix_block_hashes

kv = pytest.importorskip("vllm.distributed.kv_events")
theirs = pytest.importorskip("sagellm_protocol.kv_hooks")

BS = 128
PROMPT = list(range(1, 2 * BS + 1))  # two full blocks


def stored(hashes: list[int], tokens: list[int], parent: int | None, session: str | None) -> Any:
    return kv.BlockStored(
        block_hashes=hashes,
        parent_block_hash=parent,
        token_ids=tokens,
        block_size=BS,
        lora_id=None,
        medium="GPU",
        lora_name=None,
        group_idx=0,
        session_id=session,
    )


def removed(hashes: list[int]) -> Any:
    return kv.BlockRemoved(block_hashes=hashes, medium="GPU", group_idx=0)


BATCHES: list[tuple[float, list[Any]]] = [
    (1_700_000_000.0, [stored([11, 2**64 - 1], PROMPT, None, "r1")]),  # r1 fills two blocks
    (1_700_000_001.0, [stored([11, 2**64 - 1], PROMPT, None, "r2")]),  # r2 hits both
    (1_700_000_002.0, [removed([2**64 - 1])]),  # the second is evicted
    (1_700_000_003.0, [stored([2**64 - 1], PROMPT[BS:], 11, "r3")]),  # r3 fills it again
    (1_700_000_004.0, [kv.AllBlocksCleared()]),
]


def records() -> list[dict[str, Any]]:
    rec = KVRecorder(engine_id="e1")
    return [r for seq, (ts, evs) in enumerate(BATCHES) for r in rec.records(ts, evs, seq)]


def test_each_record_is_a_hook_payload_in_both_packages() -> None:
    for r in records():
        text = json.dumps(r)
        ours = p.KVHookPayload.model_validate_json(text)
        their = theirs.KVHookPayload.model_validate_json(text)
        assert json.loads(ours.model_dump_json()) == r
        assert json.loads(their.model_dump_json()) == r


def test_kinds_requests_and_hashes() -> None:
    rs = records()
    got = [
        (r["event"], r["metadata"]["kind"], r["request_id"], r["metadata"]["block_hash"])
        for r in rs
    ]
    big = "ffffffffffffffff"
    assert got == [
        ("allocate_after", "stored", "r1", hash_hex(11)),
        ("allocate_after", "stored", "r1", big),
        ("allocate_after", "reused", "r2", hash_hex(11)),
        ("allocate_after", "reused", "r2", big),
        ("evict_after", "removed", "", big),
        ("allocate_after", "stored", "r3", big),
        ("free_after", "cleared", "", None),
    ]
    assert rs[4]["evict_reason"] == "memory_pressure"
    assert rs[6]["evict_reason"] == "explicit_free"
    assert rs[1]["metadata"]["parent_block_hash"] == hash_hex(11)
    assert rs[0]["kv_handle"] == {
        "handle_id": hash_hex(11),
        "request_id": "r1",
        "num_tokens": BS,
        "device": "cpu",
    }
    # Our prefix hashes are the ones a request span of this prompt lists, for fresh and reused
    # blocks, and for a block re-stored with only its parent given.
    spans = prefix_block_hashes(PROMPT)
    assert [r["metadata"]["prefix_hash"] for r in rs[:6]] == [*spans, *spans, spans[1], spans[1]]
    assert rs[0]["metadata"]["time_unix_nano"] == 1_700_000_000 * 10**9
    assert bytes.fromhex(hash_hex(b"\x01" * 32) or "") == b"\x01" * 8  # bytes hashes: low 64 bits


def test_partial_blocks_get_no_prefix_hash() -> None:
    rec = KVRecorder(engine_id="e")
    ev = stored([5], PROMPT[:40], None, "r")
    ev.block_size = 40  # vLLM's partial-block events carry the partial size
    (r,) = rec.records(1.0, [ev])
    assert r["metadata"]["prefix_hash"] is None
    assert r["kv_handle"]["num_tokens"] == 40


def test_frame_lifetimes_and_steps(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.write(layout.KV_EVENTS, records())
    store.close()
    ev = kv_events(tmp_path / "run")
    check_schema(ev, KV_EVENTS)
    assert ev["kind"].to_list() == [
        "stored",
        "stored",
        "reused",
        "reused",
        "removed",
        "stored",
        "cleared",
    ]
    assert ev["request_id"].to_list()[4:] == [None, "r3", None]
    assert ev["run_id"].unique().to_list() == [store.run_id]
    life = block_lifetimes(ev)
    rows = life.select(
        "block_hash", "reuses", "stored_by", "reused_by", "evicted", "lifetime_s"
    ).rows()
    big = "ffffffffffffffff"
    assert rows == [
        (hash_hex(11), 1, "r1", ["r2"], False, None),
        (big, 1, "r1", ["r2"], True, 2.0),
        (big, 0, "r3", [], False, None),
    ]
    steps = pl.DataFrame(
        {
            "time": [
                1_700_000_000_500_000_000,
                1_700_000_002_500_000_000,
                1_700_000_009_000_000_000,
            ],
            "engine_idx": [0, 0, 0],
            "step": [1, 2, 3],
            "kv_cache_usage": [0.1, 0.2, 0.3],
        }
    ).with_columns(pl.col("time").cast(pl.Datetime("ns", "UTC")))
    per = kv_events_per_step(ev, steps)
    assert per.select("step", "stored", "reused", "removed").rows() == [
        (1, 2, 0, 0),
        (2, 0, 2, 1),
        (3, 1, 0, 0),
    ]


def test_consumer_receives_vllm_publisher(tmp_path: Path) -> None:
    """vLLM's own ZmqEventPublisher connects to our loopback SUB socket (binds nothing else)."""
    got: list[Mapping[str, Any]] = []
    consumer = KVEventConsumer(got.extend, engine_id="e")
    assert consumer.endpoint.startswith("tcp://127.0.0.1:")
    cfg = consumer.vllm_config()
    pub = kv.EventPublisherFactory.create(cfg)
    try:
        # A PUB socket drops what it sends before our subscription reaches it (ZMQ's slow
        # joiner): send empty batches until one arrives. An engine takes seconds to start, so its
        # first events come long after.
        probes = 0
        while consumer.counts.batches == 0 and probes < 200:
            pub.publish(kv.KVEventBatch(ts=0.0, events=[]))
            probes += 1
            consumer.drain(idle=0.05, timeout=0.2)
        consumer.drain(idle=0.3, timeout=5.0)
        first_seq = consumer.counts.batches
        assert first_seq > 0
        for ts, evs in BATCHES:
            pub.publish(kv.KVEventBatch(ts=ts, events=evs))
        deadline = time.monotonic() + 20
        while len(got) < 7 and time.monotonic() < deadline:
            consumer.drain(idle=0.2, timeout=1.0)
    finally:
        pub.shutdown()
        consumer.close()
    assert [r["metadata"]["kind"] for r in got] == [r["metadata"]["kind"] for r in records()]
    assert consumer.counts.batches == first_seq + 5
    assert consumer.counts.events == 5
    assert consumer.counts.by_kind == {"stored": 3, "reused": 2, "removed": 1, "cleared": 1}
    assert consumer.counts.dropped_batches == 0
    seqs = [r["metadata"][sc.KV_BATCH_SEQ] - probes for r in got]
    assert seqs == [0, 0, 1, 1, 2, 3, 4]


def _until_received(consumer: KVEventConsumer, send: Callable[[], None]) -> None:
    """Send empty batches until one arrives (a PUB socket drops what it sends before its
    connection is up: ZMQ's slow joiner), then let the probes still in flight arrive."""
    before = consumer.counts.batches
    _wait_for(lambda: consumer.counts.batches > before, send)
    assert consumer.counts.batches > before, "no probe reached the consumer"
    consumer.drain(idle=0.3, timeout=5.0)


def _wait_for(done: Callable[[], bool], each: Callable[[], None] = lambda: None) -> None:
    deadline = time.monotonic() + 30  # a hang guard, not a timing
    while not done() and time.monotonic() < deadline:
        each()
        time.sleep(0.02)


def test_bad_messages_a_failing_writer_and_a_gone_publisher_are_skipped() -> None:
    """Through the socket: messages that are not batches and a batch whose write fails are
    counted in dropped_batches and skipped; after its publisher closed its socket, the consumer
    still records what a new publisher (vLLM's) sends."""
    import msgspec
    import zmq

    got: list[Mapping[str, Any]] = []

    def write(recs: Sequence[Mapping[str, Any]]) -> None:
        if any(r["metadata"][sc.KV_KIND] == sc.KV_REMOVED for r in recs):
            raise OSError("No space left on device")  # as a full disk would
        got.extend(recs)

    consumer = KVEventConsumer(write, engine_id="e")
    enc = msgspec.msgpack.Encoder()

    def batch(seq: int, ts: float, events: list[Any]) -> list[bytes]:
        return [b"", seq.to_bytes(8, "big"), enc.encode(kv.KVEventBatch(ts=ts, events=events))]

    pub: Any = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(consumer.endpoint)
    try:
        _until_received(consumer, lambda: pub.send_multipart(batch(0, 0.0, [])))
        pub.send_multipart([b"", b"\x00" * 8])  # two frames, not three
        pub.send_multipart([b"", b"\x00" * 8, b"not msgpack"])
        pub.send_multipart(batch(1, 1.0, [stored([11], PROMPT[:BS], None, "r1")]))
        pub.send_multipart(batch(2, 2.0, [removed([11])]))  # its write fails
        pub.send_multipart(batch(3, 3.0, [stored([12], PROMPT[BS:], 11, "r2")]))
        _wait_for(lambda: len(got) == 2)  # the last batch written: the ones before it are done
    finally:
        pub.close(linger=0)  # the publisher's socket is gone
    assert consumer.counts.dropped_batches == 3
    assert [(r["request_id"], r["metadata"][sc.KV_KIND]) for r in got] == [
        ("r1", sc.KV_STORED),
        ("r2", sc.KV_STORED),
    ]

    vllm_pub = kv.EventPublisherFactory.create(consumer.vllm_config())
    try:
        _until_received(consumer, lambda: vllm_pub.publish(kv.KVEventBatch(ts=4.0, events=[])))
        vllm_pub.publish(kv.KVEventBatch(ts=5.0, events=[stored([11], PROMPT[:BS], None, "r3")]))
        _wait_for(lambda: len(got) == 3)
    finally:
        vllm_pub.shutdown()
        consumer.close()
    assert (got[-1]["request_id"], got[-1]["metadata"][sc.KV_KIND]) == ("r3", sc.KV_STORED)
    assert consumer.counts.dropped_batches == 3


@pytest.mark.parametrize("rank", [0, 1, 3])
@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:5557", "tcp://127.0.0.1:0"])
def test_rank_endpoint_is_vllms_offset(endpoint: str, rank: int) -> None:
    assert rank_endpoint(endpoint, rank) == kv.ZmqEventPublisher.offset_endpoint_port(
        endpoint, rank
    )


def test_consumer_receives_every_data_parallel_rank() -> None:
    """Two vLLM publishers (ranks 0 and 1) on one config: both reach us, each rank its own index."""
    got: list[Mapping[str, Any]] = []
    consumer = KVEventConsumer(got.extend, engine_id="e", ranks=2)
    assert consumer.endpoints == [rank_endpoint(consumer.endpoint, r) for r in (0, 1)]
    pubs = [kv.EventPublisherFactory.create(consumer.vllm_config(), r) for r in (0, 1)]
    try:
        for pub in pubs:  # ZMQ's slow joiner: probe each until its empty batch arrives
            before = consumer.counts.batches
            for _ in range(200):
                pub.publish(kv.KVEventBatch(ts=0.0, events=[]))
                consumer.drain(idle=0.05, timeout=0.2)
                if consumer.counts.batches > before:
                    break
        consumer.drain(idle=0.3, timeout=5.0)
        stored = kv.BlockStored(
            block_hashes=[1], parent_block_hash=None, token_ids=list(range(BS)),
            block_size=BS, lora_id=None, medium="CPU", lora_name=None,
        )  # fmt: skip
        for pub in pubs:  # the same block in both ranks' caches: stored in each, reused in none
            pub.publish(kv.KVEventBatch(ts=1.0, events=[stored]))
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            consumer.drain(idle=0.2, timeout=1.0)
    finally:
        for pub in pubs:
            pub.shutdown()
        consumer.close()
    meta = sorted((r["metadata"][sc.KV_ENGINE_IDX], r["metadata"][sc.KV_KIND]) for r in got)
    assert meta == [(0, sc.KV_STORED), (1, sc.KV_STORED)]
    assert consumer.counts.by_kind[sc.KV_STORED] == 2


def test_load_and_scan_carry_kv_events(tmp_path: Path) -> None:
    """frames.load()/scan() give the kv_events frame: run_id per source, bad lines skipped."""
    from sagellm_obs import frames
    from sagellm_obs.store import StoreFormatError, StoreWarning

    ids = []
    for name in ("a", "b"):
        store = RunStore(tmp_path / name)
        store.write(layout.KV_EVENTS, records())
        store.close()
        ids.append(store.run_id)
    one = frames.load(tmp_path / "a")
    assert one.kv_events.height == len(records())
    assert one.kv_events.equals(kv_events(tmp_path / "a"))  # the old loader is the same frame
    both = frames.scan(str(tmp_path / "*"))
    ev = both.kv_events.filter(pl.col("kind") == sc.KV_STORED).collect()
    assert ev.group_by("run_id").len().sort("run_id").rows() == sorted((i, 3) for i in ids)
    f = layout.data_files(tmp_path / "b", layout.KV_EVENTS)[0]
    with f.open("a") as out:
        out.write("{not json\n")
        out.write(json.dumps(records()[0]) + "\n")
    with pytest.raises(StoreFormatError, match=f.name):
        frames.load(tmp_path / "b")
    with pytest.warns(StoreWarning, match="skipped 1 bad record"):
        skipped = frames.load(tmp_path / "b", errors="skip")
    assert skipped.kv_events.height == len(records()) + 1
    assert len(skipped.report.skipped) == 1
    with pytest.warns(StoreWarning):
        uncached = frames.load(tmp_path / "b", errors="skip", cache=False)
    assert uncached.kv_events.equals(skipped.kv_events)


def test_kv_events_survive_save_and_the_parquet_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames.save() and the whole-frames Parquet cache keep kv_events, equal to the run's."""
    from sagellm_obs import frames
    from sagellm_obs.frames import files as files_mod

    store = RunStore(tmp_path / "run")
    store.write(layout.KV_EVENTS, records())
    store.close()
    run = frames.load(tmp_path / "run")
    assert run.kv_events.height == len(records())

    back = frames.load(run.save(tmp_path / "saved"))
    assert back.from_cache
    assert_frame_equal(back.kv_events, run.kv_events)

    # The same lines in a folder that is not a run folder: built once, then served by the cache.
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in layout.data_files(tmp_path / "run", layout.KV_EVENTS):
        shutil.copy2(f, plain / f.name)
    built = frames.load(plain)
    assert not built.from_cache
    assert_frame_equal(
        built.kv_events, run.kv_events.with_columns(run_id=pl.lit(None, pl.Categorical))
    )

    def no_build(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sources were read although the cache is valid")

    monkeypatch.setattr(files_mod, "build_file", no_build)
    cached = frames.load(plain)
    assert cached.from_cache
    assert_frame_equal(cached.kv_events, built.kv_events)
    assert_frame_equal(frames.load(plain / ".cache").kv_events, built.kv_events)
