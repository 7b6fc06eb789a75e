"""Fixtures of the trace-backend tests: Arize Phoenix (helpers in ``phoenix_server.py``).

Outside CI a missing Phoenix virtualenv skips the tests with the commands that create it; with
``CI=true`` the fixture creates it itself (network: PyPI only).
"""

from __future__ import annotations

from collections.abc import Iterator

import phoenix_server as px
import pytest

from tests.conftest import IN_CI, need


@pytest.fixture(scope="session")
def phoenix_venv(tmp_path_factory: pytest.TempPathFactory) -> px.PhoenixVenv:
    """The Phoenix virtualenv: reused when it holds the pinned version, created when CI=true."""
    venv = px.venv_dir()
    with px.venv_lock(venv):
        if px.installed_version(venv) == px.PHOENIX_VERSION:
            return px.PhoenixVenv(venv, px.venv_python(venv), 0.0)
        how = " && ".join(" ".join(cmd) for cmd in px.install_commands(venv))
        need(IN_CI, f"arize-phoenix=={px.PHOENIX_VERSION} in {venv}", f"{how}  (CI=true does it)")
        try:
            return px.install(venv, tmp_path_factory.mktemp("phoenix-install") / "pip.log")
        except px.PhoenixError as exc:
            pytest.fail(str(exc))


@pytest.fixture(scope="module")
def phoenix(
    phoenix_venv: px.PhoenixVenv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[px.Phoenix]:
    """Phoenix on free 127.0.0.1 ports (HTTP and gRPC), SQLite in a temporary working dir."""
    try:
        server = px.start(phoenix_venv, tmp_path_factory.mktemp("phoenix"))
    except px.PhoenixError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()
