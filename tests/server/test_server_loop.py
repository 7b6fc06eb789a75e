"""The event loop ``serve`` runs the engine and the routes on: uvloop, as vLLM's own server."""

from __future__ import annotations

import asyncio
import sys

import pytest
from typer.testing import CliRunner

from sagellm_obs.server.serve import loop_runner
from tests.server.conftest import ServerHarness


async def _loop_class() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_auto_is_uvloop_when_installed_else_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvloop

    name, run = loop_runner("auto")
    assert (name, run) == ("uvloop", uvloop.run)
    assert run(_loop_class()).startswith("uvloop")
    name, run = loop_runner("asyncio")
    assert name == "asyncio" and run(_loop_class()) == "asyncio.unix_events"

    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    assert loop_runner("auto")[0] == "asyncio"
    with pytest.raises(ValueError, match="uvloop is not installed"):
        loop_runner("uvloop")


def test_an_unknown_loop_is_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        loop_runner("trio")
    from sagellm_obs.cli import app

    result = CliRunner().invoke(app, ["serve", "--loop", "trio"])
    assert result.exit_code == 2
    assert "unknown event loop 'trio'" in result.output


def test_the_background_server_serves_on_uvloop(harness: ServerHarness) -> None:
    loop = harness.server.call(asyncio.get_running_loop)
    assert type(loop).__module__.startswith("uvloop"), type(loop)
