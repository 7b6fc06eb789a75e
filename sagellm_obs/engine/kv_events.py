"""vLLM's KV cache events, consumed off the engine's hot path and recorded as sageLLM hook payloads.

vLLM's scheduler collects ``BlockStored`` / ``BlockRemoved`` / ``AllBlocksCleared`` events each step
and hands the batch to its publisher, whose own thread msgpack-encodes it onto a ZMQ PUB socket.
We bind a SUB socket on ``127.0.0.1`` (a random port) and point vLLM's publisher at it: vLLM's
``ZmqEventPublisher`` *connects* to an endpoint without a wildcard, so nothing listens beyond
loopback and messages queue on the connected pipe instead of being lost to a slow joiner. A daemon
thread of ours decodes the batches and turns each block of each event into one line of the run
folder's ``kv-events`` file: a :class:`~sagellm_obs.protocol.KVHookPayload` in JSON.

What each vLLM event becomes (``metadata["kind"]``, see :data:`sagellm_obs.semconv.KV_KINDS`):

* ``BlockStored`` of a block not live yet: ``allocate_after``, kind ``stored``, ``request_id`` the
  request that filled it (we pass it to vLLM as the request's ``session_id``);
* ``BlockStored`` of a block already live: kind ``reused``. vLLM re-reports the prefix-cache hits
  of a request whose ``kv_cache_report_mode`` is ``"full"``, which the engine sets when KV events
  are on (two requests computing the same new block at once also land here);
* ``BlockRemoved``: ``evict_after`` with reason ``memory_pressure``, kind ``removed``: vLLM drops a
  cached block's hash when it hands the free block to a new allocation (or replaces a partial
  block's hash); vLLM does not say which request caused it, so ``request_id`` is ``""``;
* ``AllBlocksCleared`` (a prefix-cache reset): ``free_after``, reason ``explicit_free``, kind
  ``cleared``.

Full blocks also get ``metadata["prefix_hash"]``: our own chained hash of the block's tokens
(:func:`~sagellm_obs.telemetry.attributes.chain_block_hash`), the value a request span lists in
``sagellm.prefix.block_hashes``, when the block size is the one those hashes use (128, vLLM's CPU
default) and the block's parent is known.

Off the engine's hot path: vLLM's scheduler only queues the batch; its publisher thread sends it
on a PUB socket, which drops messages past its high-water mark instead of blocking, so a slow,
stuck or closed consumer never stalls the engine. Telemetry never raises into the engine: a
message that fails to decode (wrong frames, not a batch) or a batch that fails to write is
counted in ``dropped_batches`` and skipped (logged the 1st, 2nd, 4th... time), and the thread
goes on with the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sagellm_obs import semconv as sc
from sagellm_obs.telemetry import PREFIX_BLOCK_TOKENS, chain_block_hash

_log = logging.getLogger(__name__)

Writer = Callable[[Sequence[Mapping[str, Any]]], Any]
"""Takes a batch of records (JSON-ready dicts); e.g. ``store.write("kv-events", ...)``."""

_MASK64 = (1 << 64) - 1
_MAX_KNOWN = 1 << 20  # vLLM hash -> our hash entries kept (~200 B each); forgotten past this
_POLL_MS = 100
_MAX_PER_POLL = 1000  # messages taken between two looks at the stop flag


def hash_hex(value: Any) -> str | None:
    """vLLM's block hash (an int by default, bytes with ``VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0``)
    as 16 hex digits (the int's low 64 bits, as vLLM derives it from the bytes)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = int.from_bytes(value, "big")
    return f"{int(value) & _MASK64:016x}"


@dataclass
class KVEventCounts:
    """What the consumer has seen so far (read them after :meth:`KVEventConsumer.drain`).

    Attributes:
        batches: Event batches received (one per engine step with events).
        events: vLLM events in them.
        records: Records written (one per block of each event, one per cleared cache).
        by_kind: Records by kind (stored, reused, removed, cleared).
        dropped_batches: Batches that failed to decode or write.
        cpu_seconds: CPU time the consumer thread spent (``time.thread_time``).
    """

    batches: int = 0
    events: int = 0
    records: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(sc.KV_KINDS, 0))
    dropped_batches: int = 0
    cpu_seconds: float = 0.0


class KVRecorder:
    """Turns decoded vLLM event batches into hook-payload records; keeps which blocks are live.

    Separate from the socket so it can be driven by vLLM's own event classes in tests.
    """

    def __init__(self, *, engine_id: str, engine_idx: int = 0, device: str = "cpu") -> None:
        self.engine_id = engine_id
        self.engine_idx = engine_idx
        self.device = device
        self._live: set[tuple[int | None, str]] = set()
        self._ours: dict[str, bytes] = {}  # vLLM block hash -> our chained prefix hash
        self.counts = KVEventCounts()

    def records(
        self, ts: float, events: Sequence[Any], seq: int | None = None
    ) -> list[dict[str, Any]]:
        """The records of one event batch (``ts``: vLLM's ``time.time()`` of the batch)."""
        now = int(ts * 1e9)
        out: list[dict[str, Any]] = []
        for ev in events:
            name = type(ev).__name__
            if name == "BlockStored":
                self._stored(ev, now, seq, out)
            elif name == "BlockRemoved":
                for h in ev.block_hashes:
                    key = hash_hex(h) or ""
                    self._live.discard((ev.group_idx, key))
                    ours = self._ours.get(key)
                    out.append(
                        self._record(
                            "evict_after", sc.KV_REMOVED, "", key, None, now, seq, ev,
                            tokens=0, reason="memory_pressure", prefix=ours,
                        )
                    )  # fmt: skip
            elif name == "AllBlocksCleared":
                self._live.clear()
                out.append(
                    self._record(
                        "free_after", sc.KV_CLEARED, "", "", None, now, seq, ev,
                        tokens=0, reason="explicit_free", prefix=None,
                    )
                )  # fmt: skip
        self.counts.events += len(events)
        self.counts.records += len(out)
        for r in out:
            self.counts.by_kind[r["metadata"][sc.KV_KIND]] += 1
        return out

    def _stored(self, ev: Any, now: int, seq: int | None, out: list[dict[str, Any]]) -> None:
        request_id = ev.session_id or ""
        size = int(ev.block_size)
        parent = hash_hex(ev.parent_block_hash)
        our_parent: bytes | None = b"" if parent is None else self._ours.get(parent)
        tokens = ev.token_ids
        for i, h in enumerate(ev.block_hashes):
            key = hash_hex(h) or ""
            block_tokens = tokens[i * size : (i + 1) * size]
            ours: bytes | None = self._ours.get(key)
            full = size == PREFIX_BLOCK_TOKENS and len(block_tokens) == size
            if ours is None and our_parent is not None and full:
                ours = chain_block_hash(our_parent, block_tokens)
                if len(self._ours) >= _MAX_KNOWN:
                    self._ours.clear()
                self._ours[key] = ours
            live = (ev.group_idx, key)
            kind = sc.KV_REUSED if live in self._live else sc.KV_STORED
            self._live.add(live)
            out.append(
                self._record(
                    "allocate_after", kind, request_id, key, parent, now, seq, ev,
                    tokens=len(block_tokens), reason=None, prefix=ours,
                )
            )  # fmt: skip
            parent, our_parent = key, ours

    def _record(
        self,
        event: str,
        kind: str,
        request_id: str,
        block: str,
        parent: str | None,
        now: int,
        seq: int | None,
        ev: Any,
        *,
        tokens: int,
        reason: str | None,
        prefix: bytes | None,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            sc.KV_TIME_UNIX_NANO: now,
            sc.KV_ENGINE_ID: self.engine_id,
            sc.KV_ENGINE_IDX: self.engine_idx,
            sc.KV_KIND: kind,
            sc.KV_BLOCK_HASH: block or None,
            sc.KV_PARENT_BLOCK_HASH: parent,
            sc.KV_PREFIX_HASH: prefix.hex() if prefix is not None else None,
            sc.KV_BLOCK_SIZE: getattr(ev, "block_size", None),
            sc.KV_MEDIUM: getattr(ev, "medium", None),
            sc.KV_GROUP_IDX: getattr(ev, "group_idx", None),
            sc.KV_BATCH_SEQ: seq,
        }
        handle = (
            {
                "handle_id": block,
                "request_id": request_id,
                "num_tokens": tokens,
                "device": self.device,
            }
            if block
            else None
        )
        return {
            "event": event,
            "request_id": request_id,
            "trace_id": None,
            "kv_handle": handle,
            "evict_reason": reason,
            "device": self.device,
            "elapsed_ms": 0.0,
            "success": True,
            "error_message": None,
            "metadata": meta,
        }


class KVEventConsumer:
    """A SUB socket on loopback and the thread that records what vLLM publishes to it.

    Args:
        write: Where record batches go (called on the consumer thread; must not block long).
        engine_id: Our engine id, put in every record.
        engine_idx: The engine index put in records of batches that carry no data-parallel rank.
        ranks: vLLM's data-parallel size. The publisher of rank ``r`` connects to the endpoint's
            port plus ``r`` (:func:`rank_endpoint`), so one socket binds ``ranks`` consecutive
            ports and each record's ``engine_idx`` is the rank its batch names.
    """

    def __init__(
        self, write: Writer, *, engine_id: str, engine_idx: int = 0, ranks: int = 1
    ) -> None:
        import zmq

        self._write = write
        self.recorder = KVRecorder(engine_id=engine_id, engine_idx=engine_idx)
        self._by_rank: dict[int, KVRecorder] = {}
        ctx: Any = zmq.Context.instance()
        self._sock: Any = ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.setsockopt(zmq.LINGER, 0)
        self.endpoints = _bind_consecutive(self._sock, max(1, ranks))
        self.endpoint = self.endpoints[0]
        self._stop = threading.Event()
        self._last_message = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="sagellm-obs-kv-events", daemon=True)
        self._thread.start()

    def _recorder(self, rank: int | None) -> KVRecorder:
        """The recorder of a data-parallel rank: each rank's cache has its own live blocks."""
        if rank is None or rank == self.recorder.engine_idx:
            return self.recorder
        rec = self._by_rank.get(rank)
        if rec is None:
            rec = KVRecorder(engine_id=self.recorder.engine_id, engine_idx=rank)
            rec.counts = self.recorder.counts  # one tally for the consumer
            self._by_rank[rank] = rec
        return rec

    @property
    def counts(self) -> KVEventCounts:
        """What has been received and written so far."""
        return self.recorder.counts

    def vllm_config(self) -> Any:
        """vLLM's ``KVEventsConfig`` that publishes to this consumer."""
        from vllm.config.kv_events import KVEventsConfig

        return KVEventsConfig(
            enable_kv_cache_events=True, publisher="zmq", endpoint=self.endpoint, topic=""
        )

    def drain(self, *, idle: float = 0.3, timeout: float = 10.0) -> bool:
        """Wait until nothing has arrived for ``idle`` seconds (True), or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if time.monotonic() - self._last_message >= idle:
                return True
            time.sleep(idle / 3)
        return False

    def close(self, *, drain: bool = True) -> None:
        """Stop the thread (after draining what is in flight) and close the socket."""
        if drain and self._thread.is_alive():
            self.drain(timeout=5.0)
        self._stop.set()
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self._sock.close(linger=0)

    def _run(self) -> None:
        import msgspec
        import zmq
        from vllm.distributed.kv_events import KVEventBatch

        decoder = msgspec.msgpack.Decoder(type=KVEventBatch)
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        counts = self.recorder.counts
        while not self._stop.is_set():
            try:
                if not poller.poll(_POLL_MS):
                    continue
                start = time.thread_time()
                for _ in range(_MAX_PER_POLL):
                    try:
                        frames = self._sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._last_message = time.monotonic()
                    self._one(frames, decoder)
                counts.cpu_seconds += time.thread_time() - start
            except Exception:  # never let the thread die: the engine keeps running regardless
                _log.exception("sagellm-obs: KV event consumer error")

    def _one(self, frames: list[bytes], decoder: Any) -> None:
        counts = self.recorder.counts
        counts.batches += 1
        try:
            _topic, seq_bytes, payload = frames
            batch = decoder.decode(payload)
            seq = int.from_bytes(seq_bytes, "big")
            records = self._recorder(batch.data_parallel_rank).records(batch.ts, batch.events, seq)
            if records:
                self._write(records)
        except Exception:
            counts.dropped_batches += 1
            # A full disk or a peer sending garbage fails every batch: log the 1st, 2nd, 4th...
            n = counts.dropped_batches
            if n & (n - 1) == 0:
                _log.exception("sagellm-obs: dropped a KV event batch (%d so far)", n)


def rank_endpoint(endpoint: str, rank: int) -> str:
    """The TCP endpoint vLLM's publisher of data-parallel ``rank`` uses for ``endpoint``.

    Mirrors ``ZmqEventPublisher.offset_endpoint_port`` for TCP: rank 0 and port 0 unchanged,
    otherwise the port plus the rank.
    """
    base, _, port = endpoint.rpartition(":")
    if rank == 0 or int(port) == 0:
        return endpoint
    return f"{base}:{int(port) + rank}"


def _bind_consecutive(sock: Any, ranks: int, *, tries: int = 50) -> list[str]:
    """Bind ``sock`` to ``ranks`` consecutive loopback ports (a free first port, then the next)."""
    import zmq

    for _ in range(tries):
        first = f"tcp://127.0.0.1:{sock.bind_to_random_port('tcp://127.0.0.1')}"
        bound = [first]
        try:
            for r in range(1, ranks):
                ep = rank_endpoint(first, r)
                sock.bind(ep)
                bound.append(ep)
            return bound
        except zmq.ZMQError:  # a later port is taken: let all go and draw another
            for ep in bound:
                sock.unbind(ep)
    raise OSError(f"no {ranks} consecutive free loopback ports for KV events")
