"""Fixtures of the hardening tests: one shared real server, and the selection of soak tests.

The shared server (``sagellm-obs serve`` in its own process, tiny model, run folder in a temp dir)
serves the server fuzzing and the concurrency tests, and is stopped as soon as the next test does
not use it, so its engine does not sit beside the engines other tests start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hardening_fuzz import SOAK
from hardening_procs import ServerProcess, start_server

SHARED_API_KEY = "hardening-key"

_shared: dict[str, ServerProcess] = {}


@pytest.fixture
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The shared server, started on first use; fails the test if the server died during it."""
    srv = _shared.get("srv")
    if srv is None:
        srv = start_server(tmp_path_factory.mktemp("shared-server"), api_key=SHARED_API_KEY)
        _shared["srv"] = srv
    yield srv
    assert srv.alive(), f"the server died:\n{srv.log_text()[-4000:]}"


def _stop_shared() -> None:
    srv = _shared.pop("srv", None)
    if srv is not None:
        srv.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield  # the fixtures' own teardown first
    if nextitem is None or "shared_server" not in getattr(nextitem, "fixturenames", ()):
        _stop_shared()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _stop_shared()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``soak`` tests run only when asked for: ``-m soak`` or ``SAGELLM_OBS_SOAK=1`` (make soak)."""
    if SOAK or "soak" in (config.getoption("markexpr") or ""):
        return
    here = Path(__file__).parent
    soak = [i for i in items if here in Path(i.path).parents and i.get_closest_marker("soak")]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [i for i in items if i not in soak]
