"""The report tests' run folders: :func:`sagellm_obs.testing.synthetic_run`, the real pipeline."""

from __future__ import annotations

from sagellm_obs.testing import synthetic_run as build_run

__all__ = ["build_run"]
