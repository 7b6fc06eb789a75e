"""Fixtures of the notebook tests (helpers in ``notebook_helpers.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from notebook_helpers import jupyter_env


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """:func:`jupyter_env` applied to ``os.environ`` for the module's tests."""
    env = jupyter_env(tmp_path_factory.mktemp("jupyter"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        for key in [k for k in os.environ if k.startswith("OTEL_EXPORTER_OTLP")]:
            mp.delenv(key)  # the notebooks' runs stay local
        yield env
