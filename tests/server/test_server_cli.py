"""``sagellm-obs serve --port 0`` as a real process: serve, answer, stop on SIGTERM, keep spans."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.hardening.hardening_procs import raw_receiver

pytestmark = pytest.mark.engine

_SERVING = re.compile(r"serving on (http://127\.0\.0\.1:(\d+))")


def _pump(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)
    lines.put("")


def _get(url: str, key: str, ready: Callable[[str], bool]) -> str:
    """GET until ``ready(text)`` (metrics reach the registry with the telemetry thread)."""
    deadline = time.monotonic() + 10
    while True:
        resp = httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert resp.status_code == 200
        if ready(resp.text) or time.monotonic() > deadline:
            return resp.text
        time.sleep(0.2)


def test_cli_serve_subprocess(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_EXPORTER_OTLP")}
    env.update(SAGELLM_OBS_API_KEY="cli-key", COLUMNS="160")
    with raw_receiver() as (otlp_url, received):
        proc = subprocess.Popen(
            [sys.executable, "-m", "sagellm_obs.cli", "serve", "--port", "0",
             "--out", str(run_dir), "--otlp", otlp_url, "--max-num-seqs", "4"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        seen, completion_id = _serve_and_stop(proc)
        sent = [path for path, _ in received.bodies]
    assert "/v1/traces" in sent  # --otlp: the collector got the spans too
    out = "".join(seen)
    for noise in ("FutureWarning", "Triton not available", "NUMA", "Loading safetensors"):
        assert noise not in out, noise
    # When it stops, serve summarises the run folder as run does.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["requests"] == 1
    assert (run_dir / "report.html").is_file()
    assert "report: " in out and "TTFT" in out
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["engine_args"]["max_num_seqs"] == 4
    assert manifest["server"]["host"] == "127.0.0.1" and manifest["server"]["port"] > 0
    assert manifest["server"]["loop"] == "uvloop"  # as vLLM's own server
    assert manifest["otlp"], manifest
    assert summary["setup"]["served"] == manifest["server"]

    traces = sorted(run_dir.glob("traces-*.jsonl"))
    assert traces, sorted(p.name for p in run_dir.iterdir())
    text = "".join(p.read_text() for p in traces)
    assert "POST /v1/completions" in text
    assert completion_id in text  # the engine's request span (sagellm.request_id)


def _serve_and_stop(proc: subprocess.Popen[str]) -> tuple[list[str], str]:
    """Wait for ``serving on``, send one completion, check /metrics, SIGTERM; the output and
    the completion's id."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        url = None
        deadline = time.monotonic() + 180
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line == "" and proc.poll() is not None:
                break
            seen.append(line)
            if m := _SERVING.search(line):
                url = m.group(1)
                assert int(m.group(2)) > 0
        assert url is not None, "".join(seen[-40:])

        client = OpenAI(base_url=f"{url}/v1", api_key="cli-key", max_retries=0, timeout=60)
        out = client.completions.create(model="tiny-llama", prompt="def f(x):", max_tokens=4)
        assert out.usage is not None and out.usage.completion_tokens >= 1
        metrics = _get(f"{url}/metrics", "cli-key", lambda t: "gen_ai_server_time_to" in t)
        assert "vllm:time_to_first_token_seconds" in metrics
        assert "gen_ai_server_time_to_first_token_seconds" in metrics

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stopped = None
        while (line := _next_line(lines, t0)) != "":  # "" : the output ended
            seen.append(line)
            if stopped is None and line.strip() == "stopped":
                stopped = time.monotonic() - t0
        assert proc.wait(timeout=60) == 0, "".join(seen[-40:])
        # vLLM stops within the grace period; the summary and the report follow.
        assert stopped is not None and stopped < 30, (stopped, "".join(seen[-40:]))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return seen, out.id


def _next_line(lines: queue.Queue[str], t0: float) -> str:
    while True:
        try:
            return lines.get(timeout=1)
        except queue.Empty:
            assert time.monotonic() - t0 < 180, "no output for minutes after SIGTERM"
