"""Explore runs inside Jupyter: pickers, filters, a request list and linked charts.

>>> from sagellm_obs.explore import explore
>>> explore("sagellm-runs/20260101T000000Z-abc123")  # doctest: +SKIP

:func:`explore` takes one run (a run folder or loaded :class:`~sagellm_obs.frames.Frames`),
several (a dict by name or a list), or a folder of run folders such as ``sagellm-runs/``, and
returns an :class:`~sagellm_obs.explore.widget.Explorer`; :func:`live` watches a run folder while
it is written (:class:`~sagellm_obs.explore.live_view.LiveView`). Importing this package imports
neither ipywidgets nor Altair: :func:`explore` does, and enables the offline chart renderer first.
The Polars side (filters, request tables) is in :mod:`sagellm_obs.explore.data`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sagellm_obs.explore.data import Filters, RunsInput

if TYPE_CHECKING:
    import os

    from sagellm_obs.explore.live_view import LiveView
    from sagellm_obs.explore.widget import Explorer

__all__ = ["Explorer", "Filters", "LiveView", "explore", "live"]


def explore(
    run_or_frames: RunsInput,
    *,
    max_requests: int = 100,
    sample: int = 2000,
    run: str | None = None,
) -> Explorer:
    """An interactive explorer of one or more runs, for a notebook cell.

    Args:
        run_or_frames: A run folder or :class:`~sagellm_obs.frames.Frames`; runs by name
            (``{"baseline": path_a, "no cache": frames_b}``); a list of them (named after their
            folders or run ids); or a folder holding run folders (``"sagellm-runs"``).
        max_requests: Most requests in the request list (the slowest of the filtered ones).
        sample: Most requests behind the scatter and the dashboard's request charts.
        run: Name of the run shown first (default: the first).

    Returns:
        The :class:`~sagellm_obs.explore.widget.Explorer`; leave it last in a cell to show it.

    Raises:
        ValueError: No run given, or ``run`` is not one of them.
        FileNotFoundError: A run folder does not exist.
        ImportError: ipywidgets, anywidget or vl-convert-python is missing
            (``pip install 'sagellm-obs[notebook]'``).
    """
    from sagellm_obs.explore.data import normalize_runs

    runs = normalize_runs(run_or_frames)
    if run is not None and run not in runs:
        raise ValueError(f"unknown run {run!r}; runs: {', '.join(runs)}")
    _widgets_ready("explore()")
    from sagellm_obs.explore.widget import Explorer

    return Explorer(runs, max_requests=max_requests, sample=sample, run=run)


def live(
    run_dir: str | os.PathLike[str],
    *,
    every: float = 2.0,
    window_s: float | None = 120.0,
    api_key: str | None = None,
    timeout: float = 5.0,
    cpu_budget: float | None = 0.02,
) -> LiveView:
    """A live view of a run folder while it is written, for a notebook cell.

    KV-cache usage, running/waiting requests, TTFT percentiles, the prefix-cache hit rate and
    the token throughput over the last ``window_s`` seconds, refreshed every ``every`` seconds
    from the lines the run appended (no server needed). It stops when the run ends.

    The view keeps the engine it watches fast: each chart draws at most 300 rows (the window
    aggregated into time buckets), and refreshes are spaced further apart than ``every`` when
    needed to keep their CPU under ``cpu_budget`` of one core (0.02: 2%; None: no budget); the
    status line then says so (``refreshing every 3.2 s to stay under 2% CPU``).

    ``run_dir`` may be a running ``sagellm-obs serve``'s URL (``"http://127.0.0.1:8000"``): the
    view then reads the run folder the server reports (``GET /v1/sagellm/run``; told only to a
    client on the same machine), sending ``api_key`` (default ``$SAGELLM_OBS_API_KEY``) and
    waiting at most ``timeout`` seconds for the answer. Its ``/metrics`` is not used.

    Raises:
        FileNotFoundError: The run folder does not exist (yet).
        sagellm_obs.watch.EndpointError: The URL's server does not answer, keeps no run folder,
            or records on another machine (the message says what to do).
        ImportError: ipywidgets, anywidget or vl-convert-python is missing.
    """
    _widgets_ready("live()")
    from sagellm_obs.explore.live_view import LiveView
    from sagellm_obs.watch import is_url, server_run_dir

    if is_url(run_dir):
        run_dir = server_run_dir(str(run_dir), api_key=api_key, timeout=timeout)
    return LiveView(run_dir, every=every, window_s=window_s, cpu_budget=cpu_budget)


def _widgets_ready(what: str) -> None:
    """Checks the widget packages and turns on the offline chart renderer."""
    try:
        import anywidget  # noqa: F401
        import ipywidgets  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{what} needs ipywidgets and anywidget ({exc}): pip install 'sagellm-obs[notebook]'"
        ) from exc
    import altair as alt

    from sagellm_obs.charts import enable_offline_renderer

    enable_offline_renderer("jupyter")
    alt.JupyterChart.enable_offline(True)


def __getattr__(name: str) -> Any:
    if name == "Explorer":
        from sagellm_obs.explore.widget import Explorer

        return Explorer
    if name == "LiveView":
        from sagellm_obs.explore.live_view import LiveView

        return LiveView
    raise AttributeError(f"module 'sagellm_obs.explore' has no attribute {name!r}")
