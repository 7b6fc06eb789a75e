"""Records the vLLM spans tests/frames loads: ``python tests/frames/record_vllm_spans.py``.

Runs the tiny offline model with vLLM's own tracing on (``configure(vllm_tracing=True)``), so every
``llm_request`` span in the output was built and exported by vLLM itself, never written by hand.
Writes, next to this file, under ``data/``:

* ``vllm_and_ours.jsonl``: the run's request spans, ours and vLLM's (each vLLM span a child of
  ours, in the same trace), as the run folder holds them: OTLP/JSON lines;
* ``vllm_alone.jsonl``: vLLM's ``llm_request`` spans only, with the resource vLLM gave them (the
  run and engine ids our receiver adds are taken off), as a collector attached to a vLLM server
  alone would store them.

Rerun it after a vLLM upgrade; the tests read whatever it wrote (they assert against the files'
own attribute values, parsed with ``json``, not against numbers typed into the tests).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
DATA = HERE / "data"
VLLM_SCOPE = "vllm.tracing.otel"
SHARED = "You are a careful assistant that answers questions about Python programs. " * 6


def _requests() -> list[dict[str, object]]:
    reqs: list[dict[str, object]] = [
        {
            "request_id": f"rec-{i}",
            "trace_id": f"recorded-{i}",
            "prompt": SHARED + f"Question {i}: what does line {i} do?",
            "max_tokens": 2 + 3 * i,
            "metadata": {"ignore_eos": True},
        }
        for i in range(4)
    ]
    # One from a caller with its own trace: ours is the caller's child, vLLM's is ours'.
    reqs.append(
        {
            "request_id": "rec-traced",
            "trace_id": "recorded-traced",
            "prompt": "def main():",
            "max_tokens": 5,
            "metadata": {
                "ignore_eos": True,
                "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            },
        }
    )
    return reqs


def _lines(run_dir: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for path in sorted(run_dir.glob("traces-*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def _keep(lines: list[dict[str, object]], keep: object) -> list[dict[str, object]]:
    """The lines with only the spans ``keep(scope_name, span)`` accepts (empty ones dropped)."""
    out = []
    for line in lines:
        resource_spans = []
        for rs in line["resourceSpans"]:  # type: ignore[attr-defined]
            scopes = []
            for ss in rs["scopeSpans"]:
                spans = [s for s in ss["spans"] if keep(ss["scope"].get("name"), s)]  # type: ignore[operator]
                if spans:
                    scopes.append({**ss, "spans": spans})
            if scopes:
                resource_spans.append({**rs, "scopeSpans": scopes})
        if resource_spans:
            out.append({"resourceSpans": resource_spans})
    return out


def _vllm_resource(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    for line in lines:
        for rs in line["resourceSpans"]:  # type: ignore[attr-defined]
            attrs = rs["resource"]["attributes"]
            rs["resource"]["attributes"] = [a for a in attrs if not a["key"].startswith("sagellm.")]
    return lines


def _write(path: Path, lines: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
    print(f"{path}: {len(lines)} lines")


def main() -> int:
    from sagellm_obs import configure
    from sagellm_obs.engine import Engine

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        tel = configure(run_dir=run_dir, otlp_endpoint=False, vllm_tracing=True)
        with Engine("tiny", telemetry=tel, in_process=True, kv_cache_memory_bytes=64 * 2**20) as e:
            e.generate(_requests()[0])  # warm the prefix cache
            e.generate_batch(_requests()[1:])
            tel.flush()
        tel.shutdown()
        lines = _lines(run_dir)
    ours = {"queue", "prefill", "decode"}

    def request_spans(scope: object, span: dict[str, object]) -> bool:
        if scope == VLLM_SCOPE:
            return True
        keys = {a["key"] for a in span.get("attributes", [])}  # type: ignore[union-attr]
        return span["name"] in ours or "sagellm.request_id" in keys

    DATA.mkdir(exist_ok=True)
    _write(DATA / "vllm_and_ours.jsonl", _keep(lines, request_spans))
    alone = _keep(lines, lambda scope, span: scope == VLLM_SCOPE)
    _write(DATA / "vllm_alone.jsonl", _vllm_resource(alone))
    return 0


if __name__ == "__main__":
    sys.exit(main())
