"""The two servers of :mod:`benchmarks.server` as processes: started, awaited, measured, stopped.

vLLM's OpenAI server and ``sagellm-obs serve`` on free ports of 127.0.0.1 with the same engine
settings; :class:`Server` reads their process trees' CPU time, pauses the idle one and stops each
by its PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MODEL_NAME = "tiny-llama"
KV_BYTES = 256 * 2**20
START_TIMEOUT_S = 600.0


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


def start_vllm(model_path: str, tmp: Path) -> Server:
    """vLLM's OpenAI server on the tiny model at ``model_path``, its log under ``tmp``."""
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


def start_ours(tmp: Path) -> Server:
    """``sagellm-obs serve --model tiny`` on a port it picks (its URL is read from its log)."""
    log = tmp / "ours.log"
    cmd = [sys.executable, "-m", "sagellm_obs.cli", "serve", "--model", "tiny", "--port", "0"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(tmp), cwd=tmp)
    return Server("ours", proc, "", log)


def wait_ready(server: Server, deadline: float) -> None:
    """Until ``server`` answers ``/health`` (raises when it exits or ``deadline`` passes)."""
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
