"""Synthetic run folders shaped exactly like our store's, written fast.

A real line is made once: a ``RequestRecord`` goes through our pipeline (SDK spans) and
:func:`sagellm_obs.store.otlp_json.encode_spans`. Its four spans (request + queue/prefill/decode)
become a ``%``-template in which ids, times, request ids and the numeric attributes are
placeholders; every synthetic request fills it with its own values. Lines hold 128 requests
(512 spans, the batch span processor's batch) and files rotate at 64 MB, as ``RunStore`` does.
The manifest is the store's, with the fields a ``make run`` adds (versions, model, workload).
Only traces files are written, and no columnar copies: sealing them is measured by the benchmark
(``sagellm_seal`` in :mod:`benchmarks._load_worker`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._records import make_record
from sagellm_obs import semconv as sc
from sagellm_obs.store.otlp_json import encode_spans
from sagellm_obs.store.run import DEFAULT_MAX_BYTES, RunStore

REQUESTS_PER_LINE = 128
T0_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
_MARK = "@@"
_SPACING_NS = 20_000_000  # one request every 20 ms (50 requests/s)

# Attribute key -> placeholder name, for the request span.
_ATTR_SLOTS = {
    sc.GEN_AI_RESPONSE_ID: "rid",
    sc.GEN_AI_REQUEST_ID: "rid",
    sc.SAGELLM_REQUEST_ID: "rid",
    sc.SAGELLM_TRACE_ID: "ptid",
    sc.GEN_AI_USAGE_INPUT_TOKENS: "inp",
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: "out",
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: "cached",
    sc.SAGELLM_CACHED_PROMPT_TOKENS: "cached",
    sc.SAGELLM_COMPUTED_PROMPT_TOKENS: "computed",
    sc.GEN_AI_LATENCY_TIME_IN_QUEUE: "queue",
    sc.GEN_AI_LATENCY_TIME_TO_FIRST_TOKEN: "ttft",
    sc.GEN_AI_LATENCY_E2E: "e2e",
    sc.GEN_AI_LATENCY_TIME_IN_MODEL_PREFILL: "prefill",
    sc.GEN_AI_LATENCY_TIME_IN_MODEL_DECODE: "decode",
    sc.GEN_AI_LATENCY_TIME_IN_MODEL_INFERENCE: "inference",
    sc.SAGELLM_TPOT: "tpot",
    sc.SAGELLM_ARRIVAL_UNIX_NANO: "arrival",
    sc.SAGELLM_KV_TOKENS: "kvt",
    sc.SAGELLM_KV_BYTES: "kvb",
}
_NUMERIC = {"doubleValue"}


def _real_line() -> dict[str, Any]:
    """One request through our pipeline and encoder: the shape every synthetic line copies."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sagellm_obs.telemetry import AdvancedOptions, configure

    memory = InMemorySpanExporter()
    tel = configure(
        run_dir=False,
        otlp_endpoint=False,
        prometheus_port=False,
        engine_id="vllm-bench",
        run_id="bench-run",
        make_current=False,
        advanced=AdvancedOptions(span_exporters=[memory], simple_processors=True),
    )
    try:
        tel.submit_request(make_record(tel.anchor, 0, tag="template"))
        tel.flush()
        spans = memory.get_finished_spans()
    finally:
        tel.shutdown()
    if len(spans) != 4:
        raise RuntimeError(f"expected 4 spans per request, got {len(spans)}")
    line = encode_spans(spans)
    # The run id a store-backed configure() would put on the resource.
    attrs = line["resourceSpans"][0]["resource"]["attributes"]
    if not any(a["key"] == sc.RESOURCE_RUN_ID for a in attrs):
        attrs.append({"key": sc.RESOURCE_RUN_ID, "value": {"stringValue": "bench-run"}})
    return line


def _slot(name: str) -> str:
    return f"{_MARK}{name}{_MARK}"


def template() -> tuple[str, str, str]:
    """(line head, one request's spans as a %-template, line tail)."""
    line = _real_line()
    scope = line["resourceSpans"][0]["scopeSpans"][0]
    spans: list[dict[str, Any]] = scope["spans"]
    request = next(s for s in spans if "parentSpanId" not in s)
    children = [s for s in spans if "parentSpanId" in s]
    order = [*children, request]
    for k, span in enumerate(order):
        span["traceId"] = _slot("t")
        span["spanId"] = _slot(f"s{k}")
        if "parentSpanId" in span:
            span["parentSpanId"] = _slot(f"s{len(order) - 1}")
        span["startTimeUnixNano"] = _slot(f"b{k}")
        span["endTimeUnixNano"] = _slot(f"e{k}")
        for event in span.get("events", []):
            event["timeUnixNano"] = _slot("ft")
    for attr in request.get("attributes", []):
        slot = _ATTR_SLOTS.get(attr["key"])
        if slot is None:
            continue
        ((kind, _),) = attr["value"].items()
        attr["value"] = {kind: _slot(slot) if kind not in _NUMERIC else _slot("#" + slot)}
    scope["spans"] = [_slot("SPANS")]
    text = json.dumps(line, separators=(",", ":")).replace("%", "%%")
    head, tail = text.split(f'"{_slot("SPANS")}"')
    body = json.dumps(order, separators=(",", ":"))[1:-1].replace("%", "%%")
    # Numeric placeholders lose their quotes; string ones keep them.
    for slot in {*_ATTR_SLOTS.values()}:
        body = body.replace(f'"{_slot("#" + slot)}"', f"%({slot})r")
        body = body.replace(_slot(slot), f"%({slot})s")
    for name in ["t", "ft", *(f"{c}{k}" for c in "sbe" for k in range(len(order)))]:
        body = body.replace(_slot(name), f"%({name})s")
    if _MARK in body or _MARK in head:
        raise RuntimeError("a placeholder was left in the template")
    return head, body, tail


def _values(rng: random.Random, i: int) -> dict[str, Any]:
    arrival = T0_NS + i * _SPACING_NS + rng.randrange(1_000_000)
    queue = rng.randrange(100_000, 50_000_000)
    prefill = rng.randrange(5_000_000, 60_000_000)
    decode = rng.randrange(100_000_000, 900_000_000)
    queued = arrival + 1_000_000
    scheduled = queued + queue
    first = scheduled + prefill
    last = first + decode
    end = last + 1_000_000
    inp = rng.randrange(16, 2048)
    out = rng.randrange(1, 256)
    cached = rng.randrange(0, inp + 1) // 128 * 128
    return {
        "t": f"{rng.getrandbits(128):032x}",
        "s0": f"{rng.getrandbits(64):016x}",
        "s1": f"{rng.getrandbits(64):016x}",
        "s2": f"{rng.getrandbits(64):016x}",
        "s3": f"{rng.getrandbits(64):016x}",
        "b0": queued,
        "e0": scheduled,
        "b1": scheduled,
        "e1": first,
        "b2": first,
        "e2": last,
        "b3": arrival,
        "e3": end,
        "ft": first,
        "rid": f"req-{i}",
        "ptid": f"trace-{i}",
        "inp": inp,
        "out": out,
        "cached": cached,
        "computed": inp - cached,
        "queue": queue / 1e9,
        "ttft": (first - arrival) / 1e9,
        "e2e": (end - arrival) / 1e9,
        "prefill": prefill / 1e9,
        "decode": decode / 1e9,
        "inference": (last - scheduled) / 1e9,
        "tpot": decode / 1e9 / max(out - 1, 1),
        "arrival": arrival,
        "kvt": inp + out - 1,
        "kvb": (inp + out - 1) * 4096,
    }


def _manifest(directory: Path, requests: int) -> None:
    """The manifest a ``make run`` of these requests would leave (the store's own writer)."""
    from sagellm_obs.telemetry.setup import _versions

    store = RunStore(directory, run_id="bench-run")
    # Only the manifest: the data files are written below, and sealed by the benchmark.
    store.close()
    store.update_manifest(
        started_at=T0_NS / 1e9,
        ended_at=(T0_NS + requests * _SPACING_NS) / 1e9 + 1.0,
        service_name=sc.SERVICE_NAME_DEFAULT,
        engine_id="vllm-bench",
        capture_content=False,
        otlp=[],
        versions=_versions(),
        model="tiny-llama",
        engine_args={"model": "tiny-llama", "enable_prefix_caching": True, "seed": 0},
        kv_bytes_per_token=4096,
        workload={
            "name": "synthetic",
            "requests": requests,
            "rate": 1e9 / _SPACING_NS,
            "concurrency": None,
            "max_tokens": 256,
            "seed": 0,
            "prefix_caching": True,
        },
    )


def write_store(
    directory: Path,
    spans: int,
    *,
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write a run folder with ``spans`` spans (rounded up to whole 4-span requests)."""
    head, body, tail = template()
    requests = -(-spans // 4)
    _manifest(directory, requests)
    rng = random.Random(seed)
    index, size, total = 1, 0, 0
    fh = open(directory / f"traces-{index:05d}.jsonl", "w")  # noqa: SIM115
    try:
        for start in range(0, requests, REQUESTS_PER_LINE):
            stop = min(start + REQUESTS_PER_LINE, requests)
            line = head + ",".join(body % _values(rng, i) for i in range(start, stop)) + tail + "\n"
            if size and size + len(line) > DEFAULT_MAX_BYTES:
                fh.close()
                index += 1
                size = 0
                fh = open(directory / f"traces-{index:05d}.jsonl", "w")  # noqa: SIM115
            fh.write(line)
            size += len(line)
            total += len(line)
            if on_progress is not None:
                on_progress(stop - start)
    finally:
        fh.close()
    return {"spans": requests * 4, "requests": requests, "files": index, "bytes": total}
