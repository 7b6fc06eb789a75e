"""Drive a workload through the instrumented engine in-process, measuring the client side too.

Every request is streamed, so the runner sees its first token like a client would: client-side
TTFT and E2E are written to ``requests-client-*.jsonl`` of the run folder and joined to the
engine's spans on the request id by the frames loader.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from sagellm_obs.engine.core import InstrumentedEngine
from sagellm_obs.protocol import StreamEventDelta, StreamEventEnd
from sagellm_obs.workload.item import WorkItem


@dataclass
class Progress:
    """Live counts of a run, for progress displays."""

    total: int
    sent: int = 0
    done: int = 0
    failed: int = 0
    output_tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    kv_usage: float = 0.0
    prefix_hit_rate: float = 0.0

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started

    @property
    def tokens_per_s(self) -> float:
        """Output tokens per second so far."""
        return self.output_tokens / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class RunResult:
    """What the runner saw (the engine's own view is in the run folder)."""

    progress: Progress
    client: list[dict[str, Any]]
    interrupted: bool = False
    #: The HTTP runner's per-endpoint counts (``ReplicaStats`` by base URL); empty in-process.
    replicas: dict[str, Any] = field(default_factory=dict)


async def run_workload(
    engine: InstrumentedEngine,
    items: Sequence[WorkItem],
    *,
    concurrency: int = 8,
    duration: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunResult:
    """Send ``items`` to ``engine``; timed items at their ``at`` offsets, others ``concurrency`` at
    a time. Stops sending after ``duration`` seconds. Cancelling the task stops the run cleanly:
    in-flight requests are aborted (and recorded as cancelled), what finished is kept.
    """
    progress = Progress(total=len(items))
    client: list[dict[str, Any]] = []
    slots = asyncio.Semaphore(max(concurrency, 1))
    sink = engine.sink
    store = engine.telemetry.store
    pending_client: list[dict[str, Any]] = []

    def refresh() -> None:
        progress.kv_usage = sink.last_kv_usage
        if sink.prefix_queries:
            progress.prefix_hit_rate = sink.prefix_hits / sink.prefix_queries
        if on_progress is not None:
            on_progress(progress)

    async def one(item: WorkItem) -> None:
        async with slots:
            start_wall = time.time()
            t0 = time.perf_counter()
            first: float | None = None
            last: float | None = None
            itl_ms: list[float] = []
            row: dict[str, Any] = {
                "request_id": item.request.request_id,
                "client_start_unix_nano": int(start_wall * 1e9),
                "workload": item.kind,
                "family": item.family,
                "workload_phase": (item.request.metadata or {}).get("phase"),
            }
            progress.sent += 1
            try:
                async for event in engine.stream(item.request):
                    if isinstance(event, StreamEventDelta):
                        now = time.perf_counter()
                        if first is None:
                            first = now - t0
                            itl_ms.extend([0.0] * (len(event.content_tokens) - 1))
                        elif last is not None:
                            # Tokens delivered together: the gap, then zeros.
                            itl_ms.append((now - last) * 1000.0)
                            itl_ms.extend([0.0] * (len(event.content_tokens) - 1))
                        last = now
                    if isinstance(event, StreamEventEnd):
                        progress.output_tokens += len(event.output_tokens)
                        row["finish_reason"] = event.finish_reason
                        if event.error is not None:
                            progress.failed += 1
                            row["error"] = event.error.code.value
            except Exception as exc:  # a bad request must not stop the run
                progress.failed += 1
                row["error"] = type(exc).__name__
            row["client_ttft_s"] = first
            row["client_e2e_s"] = time.perf_counter() - t0
            row["client_itl_ms"] = itl_ms
            client.append(row)
            pending_client.append(row)
            progress.done += 1
            refresh()

    interrupted = await drive(
        items,
        one,
        slots=slots,
        duration=duration,
        store=store,
        pending=pending_client,
        refresh=refresh,
    )
    return RunResult(progress=progress, client=client, interrupted=interrupted)


async def drive(
    items: Sequence[WorkItem],
    one: Callable[[WorkItem], Coroutine[Any, Any, None]],
    *,
    slots: asyncio.Semaphore,
    duration: float | None,
    store: Any,
    pending: list[dict[str, Any]],
    refresh: Callable[[], None],
) -> bool:
    """Schedule ``one(item)`` for every item; shared by the in-process and the HTTP runner.

    Timed items start at their ``at`` offsets (open loop); untimed ones wait for a free slot of
    ``slots`` (closed loop). Rows appended to ``pending`` are written to ``store``'s
    ``requests-client`` files about once a second and at the end.

    Args:
        items: What to send, in order.
        one: Sends one item (acquires ``slots`` itself) and appends its row to ``pending``.
        slots: The concurrency bound.
        duration: Stop sending after this many seconds.
        store: A :class:`~sagellm_obs.store.RunStore`, or None to keep rows in memory only.
        pending: Rows not yet written; emptied as they are.
        refresh: Called after each task is created.

    Returns:
        True when the run was cancelled (in-flight tasks are cancelled, finished rows kept).
    """

    async def flush_client() -> None:
        while True:
            await asyncio.sleep(1.0)
            if pending and store is not None:
                rows = pending[:]
                del pending[:]
                await asyncio.to_thread(store.write, "requests-client", rows)

    tasks: list[asyncio.Task[None]] = []
    writer = asyncio.create_task(flush_client())
    interrupted = False
    t_start = time.monotonic()
    try:
        for item in items:
            if duration is not None and time.monotonic() - t_start > duration:
                break
            if item.at is not None:
                delay = t_start + item.at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                # Closed loop: wait for a slot before creating the task (bounded task list).
                await slots.acquire()
                slots.release()
            tasks.append(asyncio.create_task(one(item)))
            refresh()
        await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        interrupted = True
        for t in tasks:
            t.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        writer.cancel()
        if pending and store is not None:
            store.write("requests-client", pending[:])
            del pending[:]
    return interrupted
