"""The producers' port: the engine and the server use only ``TelemetryPort``, and it works."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import sagellm_obs
from sagellm_obs import semconv as sc
from sagellm_obs.telemetry import (
    AdvancedOptions,
    RequestRecord,
    Telemetry,
    TelemetryPort,
    configure,
)

PACKAGE = Path(sagellm_obs.__file__).parent
PRODUCERS = sorted([*(PACKAGE / "engine").glob("*.py"), *(PACKAGE / "server").glob("*.py")])
# What producers may import of the telemetry: its facade, the port and the record they fill.
ALLOWED = {"sagellm_obs.telemetry", "sagellm_obs.telemetry.port", "sagellm_obs.telemetry.records"}
# Telemetry's machinery: producers that touch it bypass the port.
MACHINERY = {"pipeline", "tracer_provider", "meter_provider", "id_generator", "next_trace_id"}


@pytest.mark.parametrize("path", PRODUCERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_producers_use_only_the_port(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    bad: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "sagellm_obs.telemetry"
        ):
            if node.module not in ALLOWED:
                bad.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and node.attr in MACHINERY:
            bad.append(f"line {node.lineno}: .{node.attr}")
    assert not bad, f"{path.name} reaches past the telemetry port: {bad}"


@pytest.fixture
def tel(tmp_path: Path) -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    spans = InMemorySpanExporter()
    adv = AdvancedOptions(span_exporters=[spans], simple_processors=True, pipeline_interval=0.02)
    telemetry = configure(run_dir=tmp_path / "run", advanced=adv, make_current=False)
    yield telemetry, spans
    telemetry.shutdown()


def test_telemetry_is_a_port(
    tel: tuple[Telemetry, InMemorySpanExporter], records: Callable[..., RequestRecord]
) -> None:
    telemetry, spans = tel
    port: TelemetryPort = telemetry  # mypy checks the structure
    port.submit_request(records(port.anchor, 0))
    port.submit_step(
        {
            sc.STEP_TIME_UNIX_NANO: 1,
            sc.STEP_ENGINE_ID: port.engine_id,
            sc.STEP_INDEX: 1,
            sc.STEP_RUNNING: 1,
            sc.STEP_WAITING: 0,
            sc.STEP_KV_USAGE: 0.5,
            sc.STEP_PREFIX_QUERIES: 4,
            sc.STEP_PREFIX_HITS: 2,
            sc.STEP_PROMPT_TOKENS: 4,
            sc.STEP_CACHED_PROMPT_TOKENS: 2,
            sc.STEP_GENERATION_TOKENS: 1,
            sc.STEP_PREEMPTIONS: 0,
            sc.STEP_FINISHED: 0,
        }
    )
    port.annotate_run(model="m")
    assert port.flush(timeout=10)
    assert telemetry.stats()["requests_recorded"] == 1
    assert telemetry.stats()["steps_recorded"] == 1
    assert [s.kind for s in spans.get_finished_spans()].count(SpanKind.SERVER) == 1
    assert telemetry.store is not None and telemetry.store.manifest["model"] == "m"
    sampled = port.peak_mem_mb(sample=True)
    assert sampled > 0 and port.peak_mem_mb() == sampled  # a peak: kept until a higher one


def test_trace_id_hint_names_the_next_root_span_only(
    tel: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    telemetry, _ = tel
    wanted = 0x0AF7651916CD43DD8448EB211C80319C
    with telemetry.trace_id_hint(wanted):
        first = telemetry.tracer.start_span("first")
        second = telemetry.tracer.start_span("second")
    after = telemetry.tracer.start_span("after")
    with telemetry.trace_id_hint(wanted):
        pass  # an unused hint does not leak out of its block
    unused = telemetry.tracer.start_span("unused")
    with telemetry.trace_id_hint(0):  # no hint: a random id
        none = telemetry.tracer.start_span("none")
    ids = [s.get_span_context().trace_id for s in (first, second, after, unused, none)]
    for s in (first, second, after, unused, none):
        s.end()
    assert ids[0] == wanted
    assert wanted not in ids[1:]
