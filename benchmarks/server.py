"""``sagellm-obs serve`` against vLLM's own OpenAI server, same engine settings, interleaved.

Both servers run at once on free ports of 127.0.0.1 with the same engine: the offline tiny model,
float32, ``enforce_eager``, 256 MiB KV cache, prefix caching on, ``max_model_len`` 1024,
``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (the model runs inside EngineCore, a child process), stats
on (vLLM's server default). Rounds alternate between them, rotated, so only one serves at a time:
``requests`` streamed ``/v1/completions`` (``ignore_eos``, ``max_tokens`` tokens,
``stream_options.include_usage``) from a bounded asyncio loop with ``concurrency`` in flight.
The client (this process) measures TTFT (to the first chunk with text), ITL (gaps between text
chunks) and output tokens/s (usage tokens / round wall time); the servers' CPU is their process
trees' CPU time (``psutil``) per request. Both are stopped by PID at the end. As in
``engine_overhead``, repetitions run until ``reps`` of them were quiet (other processes kept at
most ``QUIET_CORES`` busy in every round), and the quiet ones are reported when there are enough.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._common import (
    QUIET_CORES,
    TOY_ROUNDS,
    Options,
    OthersMeter,
    bootstrap_ratio_ci,
    f,
    median_ci,
    progress,
    quantile,
    ratio,
    rotations,
    say,
    spread,
    table,
    verdict,
    write_result,
)

NAME = "server"
# The target: serving through us costs at most 2% of vLLM's own server's throughput.
TARGET_THROUGHPUT = 0.98
TITLE = "HTTP server: sagellm-obs serve vs vLLM's OpenAI server"
PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "requests": 128,
        "max_tokens": 64,
        "concurrency": 32,
        # 30 quiet pairs put the throughput ratio's 95% CI at about ±4% (10 gave ±12%).
        "reps": 30,
        "max_reps": 40,
        "max_seconds": 480,
    },
    "quick": {
        "requests": 64,
        "max_tokens": 32,
        "concurrency": 16,
        "reps": 3,
        "max_reps": 6,
        "max_seconds": 120,
    },
    "toy": dict(TOY_ROUNDS),
}
SERVERS = ("vllm", "ours")
SETTLE_S = 0.5
MODEL_NAME = "tiny-llama"
KV_BYTES = 256 * 2**20
START_TIMEOUT_S = 600.0


def available() -> bool:
    """Whether ``sagellm_obs.server`` exists (another part of the project builds it)."""
    import importlib.util

    return importlib.util.find_spec("sagellm_obs.server") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def cpu(self) -> float:
        """CPU seconds of the server and its children so far."""
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total

    def pause(self, paused: bool) -> None:
        """SIGSTOP (``True``) or SIGCONT the server and its children.

        The idle server is paused while the other one is measured: it is a child of this process,
        so its periodic work (stats logging, engine polling) would neither show up as "other
        processes" nor be excluded, yet compete for the same two cores.
        """
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for proc in procs:
            try:
                if paused:
                    proc.suspend()
                else:
                    proc.resume()
            except psutil.Error:
                continue

    def stop(self) -> None:
        """SIGTERM the server's PID (it stops its EngineCore), then SIGKILL what is left."""
        import psutil

        self.pause(False)  # a stopped process would not act on SIGTERM

        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for child in children:
            try:
                if child.is_running():
                    child.kill()
            except psutil.Error:
                continue


def _env(tmp: Path) -> dict[str, str]:
    env = os.environ.copy()
    env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["SAGELLM_OBS_RUN_DIR"] = str(tmp / "ours-run")
    for name in list(env):
        if name.startswith("OTEL_EXPORTER_OTLP"):
            env.pop(name)
    return env


def _start_vllm(model_path: str, tmp: Path) -> Server:
    port = _free_port()
    log = tmp / "vllm.log"
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model_path,
        "--served-model-name",
        MODEL_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "1024",
        "--kv-cache-memory-bytes",
        str(KV_BYTES),
        "--enable-prefix-caching",
        "--seed",
        "0",
        "--disable-uvicorn-access-log",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(tmp), cwd=tmp)
    return Server("vllm", proc, f"http://127.0.0.1:{port}", log)


def _start_ours(tmp: Path) -> Server:
    log = tmp / "ours.log"
    cmd = [sys.executable, "-m", "sagellm_obs.cli", "serve", "--model", "tiny", "--port", "0"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(tmp), cwd=tmp)
    return Server("ours", proc, "", log)


def _wait_ready(server: Server, deadline: float) -> None:
    import httpx

    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            tail = server.log.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(f"{server.name} server exited:\n" + "\n".join(tail))
        if not server.url:
            for line in server.log.read_text(errors="replace").splitlines():
                if line.startswith("serving on "):
                    server.url = line.split("serving on ", 1)[1].strip()
        if server.url:
            try:
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    raise TimeoutError(f"{server.name} server not ready after {START_TIMEOUT_S:.0f} s")


@dataclass
class Sample:
    ttft: float = 0.0
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0
    error: str | None = None


@dataclass
class Round:
    server: str
    rep: int
    wall: float
    cpu: float
    others: float
    samples: list[Sample]

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.samples)


async def _one(client: Any, url: str, prompt: str, p: dict[str, Any]) -> Sample:
    body = {
        "model": MODEL_NAME,
        "prompt": prompt,
        "max_tokens": int(p["max_tokens"]),
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    s = Sample()
    t0 = last = time.perf_counter()
    seen = False
    async with client.stream("POST", f"{url}/v1/completions", json=body) as resp:
        if resp.status_code != 200:
            s.error = f"HTTP {resp.status_code}: {(await resp.aread())[:200]!r}"
            return s
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage")
            if usage:
                s.tokens = int(usage.get("completion_tokens") or 0)
            choices = chunk.get("choices") or []
            if not choices or not choices[0].get("text"):
                continue
            now = time.perf_counter()
            if not seen:
                s.ttft, seen = now - t0, True
            else:
                s.gaps.append(now - last)
            last = now
    return s


async def _round(server: Server, rep: int, p: dict[str, Any]) -> Round:
    import httpx

    n, conc = int(p["requests"]), int(p["concurrency"])
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    sem = asyncio.Semaphore(conc)
    async with httpx.AsyncClient(limits=limits, timeout=300) as client:

        async def one(i: int) -> Sample:
            async with sem:
                prompt = f"Request {rep}-{i}: write a short function that returns {i} squared."
                return await _one(client, server.url, prompt, p)

        with OthersMeter() as others:
            k0, w0 = server.cpu(), time.perf_counter()
            samples = await asyncio.gather(*(one(i) for i in range(n)))
            wall = time.perf_counter() - w0
            await asyncio.sleep(0.3)  # let the server finish its per-request bookkeeping
            cpu = server.cpu() - k0
    return Round(server.name, rep, wall, cpu, others.cores, list(samples))


def _summary(rounds: list[Round], p: dict[str, Any]) -> dict[str, Any]:
    n = int(p["requests"])
    by = {s: sorted((r for r in rounds if r.server == s), key=lambda r: r.rep) for s in SERVERS}
    out: dict[str, Any] = {}
    for name, rs in by.items():
        ttft = [s.ttft for r in rs for s in r.samples if s.error is None]
        itl = [g for r in rs for s in r.samples for g in s.gaps]
        out[name] = {
            "tok_s": spread([r.tokens / r.wall for r in rs]),
            "cpu_ms_per_request": spread([r.cpu / n * 1000 for r in rs]),
            "ttft_ms": {"p50": quantile(ttft, 0.5) * 1e3, "p99": quantile(ttft, 0.99) * 1e3},
            "itl_ms": {"p50": quantile(itl, 0.5) * 1e3, "p99": quantile(itl, 0.99) * 1e3},
            "errors": sum(1 for r in rs for s in r.samples if s.error is not None),
            "first_error": next((s.error for r in rs for s in r.samples if s.error), None),
            "tokens": sum(r.tokens for r in rs),
            "others_cores": spread([r.others for r in rs]),
        }
    a, b = out["vllm"], out["ours"]
    comparison = {
        "throughput_ratio": spread(
            [
                ratio(y.tokens / y.wall, x.tokens / x.wall)
                for x, y in zip(by["vllm"], by["ours"], strict=True)
            ]
        ),
        "ttft_p50_ratio": ratio(b["ttft_ms"]["p50"], a["ttft_ms"]["p50"]),
        "ttft_p99_ratio": ratio(b["ttft_ms"]["p99"], a["ttft_ms"]["p99"]),
        "itl_p50_ratio": ratio(b["itl_ms"]["p50"], a["itl_ms"]["p50"]),
        "itl_p99_ratio": ratio(b["itl_ms"]["p99"], a["itl_ms"]["p99"]),
        "cpu_ratio": ratio(b["cpu_ms_per_request"]["median"], a["cpu_ms_per_request"]["median"]),
    }
    return {"servers": out, "ours_over_vllm": comparison}


def _measured(servers: dict[str, Server], name: str, rep: int, p: dict[str, Any]) -> Round:
    """A round of ``name`` with every other server paused."""
    for other, server in servers.items():
        server.pause(other != name)
    time.sleep(SETTLE_S)  # let the resumed server run what it deferred while paused
    return asyncio.run(_round(servers[name], rep, p))


def run(opts: Options) -> dict[str, Any]:
    """Run the benchmark; returns (and writes) the result document's ``results``."""
    p = opts.sizes(PRESETS)
    if not available():
        results: dict[str, Any] = {"skipped": "sagellm_obs.server does not exist yet"}
        write_result(NAME, opts, p, results)
        say(f"[bold]{NAME}[/]: skipped (no sagellm_obs.server)")
        return results
    from sagellm_obs.models import TINY, build_model

    model_path = str(build_model(TINY))
    tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
    servers: dict[str, Server] = {}
    rounds: list[Round] = []
    try:
        with progress(opts.show_progress) as bar:
            task = bar.add_task(f"{NAME} (quiet reps)", total=int(p["reps"]), status="starting")
            t0 = time.monotonic()
            servers["vllm"] = _start_vllm(model_path, tmp)
            servers["ours"] = _start_ours(tmp)
            for s in servers.values():
                _wait_ready(s, t0 + START_TIMEOUT_S)
            start_s = time.monotonic() - t0
            for name in SERVERS:  # warm-up, not recorded
                r = _measured(servers, name, -1, p)
                bar.update(task, status=f"warm-up {name}: {r.tokens / r.wall:,.0f} tok/s")
            deadline = time.monotonic() + float(p["max_seconds"])
            rep = quiet = 0
            while quiet < int(p["reps"]) and rep < int(p["max_reps"]):
                if rep and time.monotonic() > deadline:
                    break
                batch = [_measured(servers, n, rep, p) for n in rotations(SERVERS, rep)]
                rounds.extend(batch)
                if all(r.others <= QUIET_CORES for r in batch):
                    quiet += 1
                    bar.update(task, advance=1)
                bar.update(
                    task,
                    status=f"rep {rep + 1}: "
                    + ", ".join(
                        f"{r.server} {r.tokens / r.wall:,.0f} tok/s (others {r.others:.2f})"
                        for r in batch
                    ),
                )
                rep += 1
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    reps = {r.rep for r in rounds}
    quiet_reps = {k for k in reps if all(r.others <= QUIET_CORES for r in rounds if r.rep == k)}
    enough = len(quiet_reps) >= max(1, int(p["reps"]) // 2)
    results = {
        "all": _summary(rounds, p),
        "quiet": _summary([r for r in rounds if r.rep in quiet_reps], p) if quiet_reps else None,
        "primary": "quiet" if enough else "all",
        "reps_run": len(reps),
        "quiet_reps": len(quiet_reps),
        "quiet_cores": QUIET_CORES,
        "start_s": start_s,
        "raw": [
            {
                "server": r.server,
                "rep": r.rep,
                "others_cores": r.others,
                "wall_s": r.wall,
                "cpu_s": r.cpu,
                "tokens": r.tokens,
                "ttft_ms": [round(s.ttft * 1e3, 3) for s in r.samples],
            }
            for r in rounds
        ],
    }
    write_result(NAME, opts, p, results)
    c = results[results["primary"]]["ours_over_vllm"]
    say(
        f"[bold]{NAME}[/]: throughput ours/vLLM {c['throughput_ratio']['median']:.3f}, "
        f"p99 TTFT ratio {c['ttft_p99_ratio']:.3f}"
    )
    return results


def intervals(r: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """95% intervals of ours / vLLM from the raw rounds of the reported repetitions."""
    raw = r.get("raw", [])
    reps = sorted({x["rep"] for x in raw})
    if r["primary"] == "quiet":
        reps = [
            k
            for k in reps
            if all(x["others_cores"] <= r["quiet_cores"] for x in raw if x["rep"] == k)
        ]
    by = {(x["server"], x["rep"]): x for x in raw}
    reps = [k for k in reps if ("ours", k) in by and ("vllm", k) in by]
    a = [by[("vllm", k)] for k in reps]
    b = [by[("ours", k)] for k in reps]

    def tps(x: dict[str, Any]) -> float:
        return float(x["tokens"]) / float(x["wall_s"])

    return {
        "throughput": median_ci([tps(y) / tps(x) for x, y in zip(a, b, strict=True)]),
        "ttft_p99": bootstrap_ratio_ci([x["ttft_ms"] for x in a], [y["ttft_ms"] for y in b], 0.99),
    }


_LABELS = {
    "vllm": "`python -m vllm.entrypoints.openai.api_server`",
    "ours": "`sagellm-obs serve`",
}


def render(doc: dict[str, Any]) -> str:
    """Markdown tables of a result document."""
    r, p = doc["results"], doc["params"]
    if "skipped" in r:
        return f"Not yet measured: {r['skipped']}."
    primary = r[r["primary"]]
    s = primary["servers"]
    rows = [
        [
            _LABELS[name],
            f(s[name]["tok_s"]["median"], 0),
            f"{f(s[name]['tok_s']['min'], 0)} – {f(s[name]['tok_s']['max'], 0)}",
            f(s[name]["ttft_ms"]["p50"], 1),
            f(s[name]["ttft_ms"]["p99"], 1),
            f(s[name]["itl_ms"]["p50"], 2),
            f(s[name]["itl_ms"]["p99"], 2),
            f(s[name]["cpu_ms_per_request"]["median"], 2),
            f(s[name]["errors"]),
        ]
        for name in SERVERS
    ]
    c = primary["ours_over_vllm"]
    ci = intervals(r)
    return "\n".join(
        [
            f"`{doc['command']}` — {p['requests']} streamed `/v1/completions` × "
            f"{p['max_tokens']} tokens (ignore_eos), concurrency {p['concurrency']}, one warm-up "
            f"round per server, then {r['reps_run']} interleaved repetitions, {r['quiet_reps']} "
            f"quiet (other processes ≤ {r['quiet_cores']} cores busy); tables: "
            f"**{r['primary']} repetitions**. Both servers started in {f(r['start_s'], 0)} s.",
            "",
            table(
                [
                    "server",
                    "output tok/s (median)",
                    "min – max",
                    "TTFT p50 ms",
                    "TTFT p99 ms",
                    "ITL p50 ms",
                    "ITL p99 ms",
                    "server CPU ms/request",
                    "errors",
                ],
                rows,
            ),
            "",
            f"Ours / vLLM: throughput **{f(c['throughput_ratio']['median'], 3)}** (median of "
            f"per-repetition pairs, 95% CI {f(ci['throughput'][0], 3)} – "
            f"{f(ci['throughput'][1], 3)}), TTFT p50 {f(c['ttft_p50_ratio'], 3)}, "
            f"TTFT p99 **{f(c['ttft_p99_ratio'], 3)}** (bootstrap 95% CI "
            f"{f(ci['ttft_p99'][0], 3)} – {f(ci['ttft_p99'][1], 3)}), "
            f"ITL p50 {f(c['itl_p50_ratio'], 3)}, "
            f"ITL p99 {f(c['itl_p99_ratio'], 3)}, server CPU per request "
            f"{f(c['cpu_ratio'], 3)}.",
        ]
    )


def headline(doc: dict[str, Any]) -> list[list[str]]:
    """Rows for the summary table: the throughput target, and p99 TTFT for information."""
    r = doc["results"]
    if "skipped" in r:
        return [["`sagellm-obs serve` vs vLLM's server", "—", "not yet measured", "—"]]
    c = r[r["primary"]]["ours_over_vllm"]
    ci = intervals(r)
    return [
        [
            "output tok/s, `sagellm-obs serve` / vLLM's server",
            f"≥ {TARGET_THROUGHPUT}",
            f"{f(c['throughput_ratio']['median'], 3)} [{f(ci['throughput'][0], 3)}, "
            f"{f(ci['throughput'][1], 3)}]",
            verdict(*ci["throughput"], TARGET_THROUGHPUT, at_least=True),
        ],
        [
            "p99 TTFT, `sagellm-obs serve` / vLLM's server",
            "— (none set)",
            f"{f(c['ttft_p99_ratio'], 3)} [{f(ci['ttft_p99'][0], 3)}, {f(ci['ttft_p99'][1], 3)}]",
            "—",
        ],
    ]
