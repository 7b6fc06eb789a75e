"""``sagellm-obs watch``: its numbers against a full load, and the real command in a terminal.

The run folder is written by the real telemetry writer while the view watches it; the terminal
test runs the console command in a pseudo-terminal and reads what it draws.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from sagellm_obs.frames import load
from sagellm_obs.frames.tail import Tail
from sagellm_obs.watch import render, snapshot, sparkline
from tests.frames.frames_otlp import LiveRun


def test_snapshot_numbers_match_a_full_load(writer: LiveRun) -> None:
    writer.batch(3)
    writer.batch(2, steps=4)
    tail = Tail(writer.path, window_s=None)
    tail.poll()
    s = snapshot(tail)
    full = load(writer.path, cache=False)
    ok = full.requests.filter(full.requests["error_type"].is_null())
    assert s.requests == full.requests.height == 5
    assert s.ttft_p50 == pytest.approx(ok["ttft_s"].quantile(0.5, "linear"))
    assert s.e2e_p99 == pytest.approx(ok["e2e_s"].quantile(0.99, "linear"))
    last = full.steps.sort("time").row(-1, named=True)
    assert (s.kv_usage, s.running, s.waiting) == (
        last["kv_cache_usage"],
        last["running"],
        last["waiting"],
    )
    hits, queries = full.steps["prefix_hits"].sum(), full.steps["prefix_queries"].sum()
    assert s.hit_rate_window == pytest.approx(hits / queries)
    assert s.hit_rate_run == pytest.approx(hits / queries)
    assert sum(s.tokens_per_s) == full.steps["generation_tokens"].sum()
    assert not s.ended
    text = _draw(s)
    assert "5 finished" in text and s.run_id in text


def test_totals_outlive_the_window(writer: LiveRun) -> None:
    tail = Tail(writer.path, window_s=None, max_rows=2)
    for _ in range(3):
        writer.batch(2)
        tail.poll()
    s = snapshot(tail)
    assert s.requests == 6 and s.window_requests <= 2
    full = load(writer.path, cache=False)
    assert s.hit_rate_run == pytest.approx(
        full.steps["prefix_hits"].sum() / full.steps["prefix_queries"].sum()
    )


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([0, 5, 10]) == "▁▄█"


def _draw(s: object) -> str:
    console = Console(width=140, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(render(s))  # type: ignore[arg-type]
    return console.export_text()


class _Terminal:
    """The watch command in a pseudo-terminal, with what it printed so far."""

    def __init__(self, run_dir: Path) -> None:
        master, slave = pty.openpty()
        env = {**os.environ, "TERM": "xterm", "COLUMNS": "140", "LINES": "40"}
        cmd = "from sagellm_obs.cli import main; main()"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", cmd, "watch", str(run_dir), "--every", "0.2"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.screen = b""

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.screen:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not shown; the terminal shows:\n{self.text()}")
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.screen += os.read(self.master, 65536)
                except OSError:  # the command exited and closed the terminal
                    time.sleep(0.1)

    def text(self) -> str:
        return self.screen.decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        os.close(self.master)


def test_watch_in_a_terminal_follows_the_run_to_its_end(writer: LiveRun) -> None:
    term = _Terminal(writer.path)
    try:
        term.wait_for("0 finished")
        writer.batch(2)
        term.wait_for("2 finished")
        writer.batch(3)
        term.wait_for("5 finished")
        writer.tel.shutdown()  # the run ends: the view keeps its last picture and exits
        term.wait_for("ended")
        assert term.proc.wait(30) == 0
    finally:
        term.close()


def test_ctrl_c_stops_watching_cleanly(writer: LiveRun) -> None:
    term = _Terminal(writer.path)
    try:
        term.wait_for("0 finished")
        term.proc.send_signal(signal.SIGINT)
        term.wait_for("stopped watching")
        assert term.proc.wait(30) == 0
    finally:
        term.close()


def test_a_folder_that_never_appears(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sagellm_obs import watch; watch.watch(r'%s', wait_s=0.3, every=0.1)"
            % (tmp_path / "nope"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "no such run folder" in out.stderr
