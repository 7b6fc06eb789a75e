"""The explorer tests' run folders: :func:`sagellm_obs.testing.synthetic_run`, the real pipeline."""

from __future__ import annotations

from functools import partial

from sagellm_obs.testing import synthetic_run as build_run

build_empty_run = partial(build_run, n=0, steps=False)
"""A run folder whose telemetry was configured and shut down without any request or step."""

__all__ = ["build_empty_run", "build_run"]
