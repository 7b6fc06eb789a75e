"""Mode ``ours_live`` of :mod:`benchmarks.engine_overhead`: notebook 07_live's view, in process.

The view refreshes on its own thread as in a kernel; a kernel would JSON-encode its widgets'
state messages and send them to the browser, so :class:`JsonComm` encodes them the same way (and
counts the bytes) before dropping them.

Run as a module it profiles refreshes outside the benchmark: ``python -m
benchmarks._engine_overhead_live RUN_DIR`` replays a run folder one second at a time and splits
each refresh's CPU (:func:`refresh_cpu`); ``--synthetic`` times the five charts of one full
synthetic window, with the charts' defaults and with the live view's point bound
(:func:`chart_cpu`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LIVE_EVERY_S = 1.0  # as notebook 07_live refreshes
LIVE_WINDOW_S = 120.0


class JsonComm:
    """Stands for a kernel's comm: a widget's messages JSON-encoded as ``jupyter_client``'s
    session encodes them, then dropped (the bytes are counted)."""

    sent_bytes = 0
    messages = 0
    split: _Split | None = None

    @classmethod
    def install(cls) -> None:
        import comm
        from comm.base_comm import BaseComm

        class Comm(BaseComm):
            def publish_msg(
                self,
                msg_type: str,
                data: Any = None,
                metadata: Any = None,
                buffers: Any = None,
                **keys: Any,
            ) -> None:
                import time

                from jupyter_client.session import json_packer

                t0 = time.thread_time()
                cls.sent_bytes += len(json_packer({"data": data, "metadata": metadata}))
                cls.messages += 1
                if cls.split is not None:
                    cls.split.add("encode", time.thread_time() - t0)

        comm.create_comm = Comm


def open_paused(run_dir: Path) -> Any:
    """The live view of notebook 07_live over the benchmark's run folder, paused."""
    JsonComm.install()
    from sagellm_obs.explore import live

    view = live(run_dir, every=LIVE_EVERY_S, window_s=LIVE_WINDOW_S)
    view.pause()
    return view


def figures(view: Any) -> dict[str, Any]:
    """What the view did over the benchmark, for the result file."""
    return {
        "refreshes": view.refreshes,
        "widget_messages": JsonComm.messages,
        "widget_bytes": JsonComm.sent_bytes,
        "window_s": LIVE_WINDOW_S,
        "every_s": LIVE_EVERY_S,
        # the view's CPU budget, its estimate of a refresh's CPU and the interval it kept
        "cpu_budget": getattr(view, "cpu_budget", None),
        "refresh_cpu_s": getattr(view, "refresh_cpu_s", None),
        "interval_s": getattr(view, "interval", LIVE_EVERY_S),
    }


class _Split:
    """Thread CPU seconds of the parts of one refresh, measured by wrapping the view's own calls
    (the refresh runs unchanged): reading the new lines (``poll``), building the window's
    requests frame (``frames``, on its first use after a poll), the status numbers
    (``snapshot``), building the charts (``build``), Altair's ``to_dict`` of their specs and the
    widgets' messages JSON-encoded as a kernel would (``encode``). Each part excludes the parts
    run inside it; what no part covers (the widgets' own trait handling) is the remainder of
    ``cpu_s_per_refresh``."""

    PARTS = ("poll", "frames", "snapshot", "build", "to_dict", "encode")

    def __init__(self) -> None:
        self.now: dict[str, float] = dict.fromkeys(self.PARTS, 0.0)
        self._inner: list[float] = []  # per open part: CPU of the parts inside it

    def timed(self, part: str, fn: Any) -> Any:
        """``fn`` timed as ``part``; a part inside another counts for itself, not the outer."""
        import functools
        import time

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._inner.append(0.0)
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - t0
                inner = self._inner.pop()
                self.now[part] += spent - inner
                if self._inner:
                    self._inner[-1] += spent

        return wrapper

    def add(self, part: str, spent: float) -> None:
        """``spent`` seconds of ``part`` measured by the caller (inside the open part, if any)."""
        self.now[part] += spent
        if self._inner:
            self._inner[-1] += spent

    def take(self) -> dict[str, float]:
        out, self.now = self.now, dict.fromkeys(self.PARTS, 0.0)
        return out


def _install_split(view: Any) -> _Split:
    import altair as alt

    from sagellm_obs.explore import live_view
    from sagellm_obs.frames.tail import Tail

    split = _Split()
    view.tail.poll = split.timed("poll", view.tail.poll)
    frames: Any = vars(Tail)["frames"]
    Tail.frames = property(split.timed("frames", frames.fget))  # type: ignore[method-assign,assignment]
    live_view.snapshot = split.timed("snapshot", live_view.snapshot)  # type: ignore[attr-defined]
    live_view.live_charts = split.timed("build", live_view.live_charts)
    for cls in (alt.Chart, alt.LayerChart):
        cls.to_dict = split.timed("to_dict", cls.to_dict)  # type: ignore[method-assign]
    JsonComm.split = split
    return split


def refresh_cpu(source: Path, work: Path, stages: int = 0, last: int = 60) -> dict[str, Any]:
    """CPU seconds per refresh of the view while ``source``'s run is replayed into ``work``.

    Each stage appends the next slice of every data file's lines (by default one slice per
    second of the run, as the view refreshes every second), then the view refreshes: reads the
    new lines, redraws, its widget messages encoded as a kernel would. Figures are medians over
    the ``last`` stages, when the window is full; ``split_s`` gives the median of each part of a
    refresh (see :class:`_Split`; CPU of this thread, the wrappers' own cost included)."""
    import json
    import statistics
    import time

    from sagellm_obs.frames import load

    work.mkdir(parents=True)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest.pop("ended_at", None)  # the replay is a run still going
    (work / "manifest.json").write_text(json.dumps(manifest))
    if not stages:
        t = load(source, cache=False).steps["time"]
        stages = max(1, round((t.max() - t.min()).total_seconds()))  # type: ignore[operator,union-attr]
    files = {p.name: p.read_text().splitlines(keepends=True) for p in source.glob("*.jsonl")}
    JsonComm.install()
    from sagellm_obs.explore import live

    view = live(work, every=3600, window_s=LIVE_WINDOW_S)
    view.stop()  # refreshed here, by hand
    split = _install_split(view)
    split.take()
    cpu, sent, parts = [], [], []
    points: list[int] = []
    for stage in range(1, stages + 1):
        for name, lines in files.items():
            lo, hi = len(lines) * (stage - 1) // stages, len(lines) * stage // stages
            with (work / name).open("a") as f:
                f.writelines(lines[lo:hi])
        before = JsonComm.sent_bytes
        t0 = time.thread_time()
        view.refresh()
        cpu.append(time.thread_time() - t0)
        sent.append(JsonComm.sent_bytes - before)
        parts.append(split.take())
        points.append(
            max(
                sum(len(rows) for rows in (w.spec or {}).get("datasets", {}).values())
                for w in view.views.values()
            )
        )
    frames = view.tail.frames
    tail = parts[-last:]
    return {
        "stages": stages,
        "steps_in_window": frames.steps.height,
        "requests_in_window": frames.requests.height,
        "cpu_s_per_refresh": round(statistics.median(cpu[-last:]), 4),
        "split_s": {k: round(statistics.median(p[k] for p in tail), 4) for k in _Split.PARTS},
        "bytes_per_refresh": statistics.median(sent[-last:]),
        "most_rows_in_a_chart": max(points[-last:]),
    }


def chart_cpu(
    seconds: float = 120.0,
    steps_per_s: float = 40.0,
    requests_per_s: float = 20.0,
    repeats: int = 15,
) -> dict[str, Any]:
    """CPU of drawing the five live charts of one full window, built from synthetic frames (those
    of the charts' benchmark): the charts with their default widths and samples (what the view
    drew before its point bound) against :func:`~sagellm_obs.explore.live_view.live_charts`.
    Each: thread CPU of building the charts, ``to_dict`` and JSON-encoding the specs (medians
    of ``repeats``), and the most rows one chart's spec carries."""
    import statistics
    import time
    from pathlib import Path as _Path

    from jupyter_client.session import json_packer

    from benchmarks.charts import synthetic_requests, synthetic_steps
    from sagellm_obs import charts
    from sagellm_obs.explore.live_view import live_charts
    from sagellm_obs.frames.loaded import Frames
    from sagellm_obs.frames.schemas import METRICS, SPANS, empty

    steps = synthetic_steps(int(seconds * steps_per_s), every_ms=1000.0 / steps_per_s)
    requests = synthetic_requests(int(seconds * requests_per_s), rate=requests_per_s)
    frames = Frames(empty(SPANS), requests, steps, empty(METRICS), source=_Path())

    def defaults() -> dict[str, Any]:
        return {
            "kv": charts.kv_usage(steps),
            "queue": charts.concurrency(steps),
            "ttft": charts.latency_over_time(requests, "ttft_s"),
            "hit_rate": charts.prefix_hit_rate(steps),
            "throughput": charts.throughput(steps),
        }

    out: dict[str, Any] = {"steps": steps.height, "requests": requests.height}
    for name, build in (("defaults", defaults), ("bounded", lambda: live_charts(frames))):
        cpu, size, rows = [], 0, 0
        for _ in range(repeats):
            t0 = time.thread_time()
            specs = {k: c.to_dict(validate=False) for k, c in build().items()}
            size = sum(len(json_packer(spec)) for spec in specs.values())
            cpu.append(time.thread_time() - t0)
        rows = max(sum(len(r) for r in s.get("datasets", {}).values()) for s in specs.values())
        out[name] = {"cpu_s": round(statistics.median(cpu), 4), "bytes": size, "most_rows": rows}
    return out


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    if sys.argv[1:] == ["--synthetic"]:
        print(json.dumps(chart_cpu()))
        sys.exit()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(refresh_cpu(Path(sys.argv[1]), Path(tmp) / "run")))
