"""Make the pictures the README opens with, from a real run: ``python docs/make_pictures.py``.

Runs ``sagellm-obs run`` on the tiny model (the default workload, fewer requests), then writes:

* ``docs/img/report.png``: the top of the run's report.html, drawn by headless Chromium
  (``apt-get install chromium``; pip's ``playwright`` drives it, nothing is downloaded);
* ``docs/img/dashboard.png``: the linked run dashboard (``charts.run_dashboard``), drawn by
  vl-convert (no browser);
* ``docs/img/watch.svg``: the terminal live view (``sagellm-obs watch``) at the end of the run.

Nothing leaves the machine. Rerun it when the report or the charts change.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

IMG = Path(__file__).resolve().parent / "img"
CHROMIUM = Path("/usr/bin/chromium")


def _run(requests: int, workdir: Path) -> Path:
    exe = Path(sys.executable).parent / "sagellm-obs"
    subprocess.run(
        [str(exe), "run", "--requests", str(requests), "--out", str(workdir / "run")],
        check=True,
        env={**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"},
    )
    return workdir / "run"


def _report_png(run_dir: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
            headless=True,
            viewport={"width": 1200, "height": 1000},
            device_scale_factor=1,
        )
        try:
            page = browser.new_page()
            page.goto((run_dir / "report.html").as_uri())
            page.wait_for_function(
                "window.sagellmCharts && window.sagellmCharts.done", timeout=60_000
            )
            page.screenshot(path=str(out), type="png")
        finally:
            browser.close()


def _dashboard_png(run_dir: Path, out: Path) -> None:
    import vl_convert as vlc

    from sagellm_obs import charts
    from sagellm_obs.frames import load

    spec = charts.run_dashboard(load(run_dir)).to_json()
    out.write_bytes(vlc.vegalite_to_png(spec, scale=1.0))


def _watch_svg(run_dir: Path, out: Path) -> None:
    from rich.console import Console

    from sagellm_obs.frames.tail import Tail
    from sagellm_obs.watch import render, snapshot

    tail = Tail(run_dir, window_s=None)
    tail.poll()
    console = Console(record=True, width=110, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(render(snapshot(tail)))
    out.write_text(console.export_svg(title="sagellm-obs watch"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    IMG.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="sagellm-pictures-"))
    try:
        run_dir = _run(args.requests, workdir)
        _report_png(run_dir, IMG / "report.png")
        _dashboard_png(run_dir, IMG / "dashboard.png")
        _watch_svg(run_dir, IMG / "watch.svg")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for path in sorted(IMG.iterdir()):
        print(f"{path}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
