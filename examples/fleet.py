"""Two `sagellm-obs serve` replicas, one workload spread over both, the fleet split by engine.

Run: .venv/bin/python examples/fleet.py   (about a minute on a laptop CPU: two tiny engines)

The client run names where each replica records (it asked `GET /v1/sagellm/run`), so loading the
client's folder alone loads the fleet.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from sagellm_obs.frames import fleet, load

CLI = [sys.executable, "-m", "sagellm_obs.cli"]


def start_replica(out: Path) -> subprocess.Popen[bytes]:
    """`sagellm-obs serve` on a free port, its output in OUT.log (see `url_of`)."""
    log = out.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as sink:
        return subprocess.Popen(
            [*CLI, "serve", "--port", "0", "--out", str(out)], stdout=sink, stderr=sink
        )


def url_of(proc: subprocess.Popen[bytes], out: Path) -> str:
    """The replica's URL, once it serves."""
    log = out.with_suffix(".log")
    while proc.poll() is None:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("serving on "):
                return line.split()[-1]
        time.sleep(0.2)
    raise RuntimeError(f"the replica did not start (exit code {proc.returncode}); see {log}")


def main() -> None:
    runs = Path("sagellm-runs")
    outs = [runs / "replica-a", runs / "replica-b"]
    replicas = []
    try:
        for out in outs:  # both load their engines at once
            replicas.append(start_replica(out))
        urls = ",".join(url_of(proc, out) for proc, out in zip(replicas, outs, strict=True))
        client = runs / "client"
        subprocess.run(
            [*CLI, "run", "--endpoint", urls, "--route", "least-loaded", "--requests", "16",
             "--max-tokens", "8", "--concurrency", "4", "--out", str(client)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        for proc in replicas:  # a graceful stop flushes each replica's run folder
            proc.send_signal(signal.SIGINT)
        for proc in replicas:
            proc.wait(timeout=120)
    frames = load(client)  # the replicas' folders join by themselves
    stats = fleet.engine_stats(frames.requests, frames.steps)
    print(stats.select("engine", "requests", "request_share", "ttft_p50_s", "ttft_p99_s"))
    slowest = fleet.slowest_engine(frames.requests, frames.steps)
    if slowest is not None:
        print(f"slowest engine by TTFT p99: {slowest['engine']}")


if __name__ == "__main__":
    main()
