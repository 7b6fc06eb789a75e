"""Watching a server by its URL: ``explore.live(URL)`` and ``sagellm-obs watch --endpoint URL``.

The shared real server (a tiny vLLM model behind uvicorn on 127.0.0.1) answers a few real
requests; the view found through its ``GET /v1/sagellm/run`` must show them, counted against the
server's run folder read independently by the loader and against the ids the server answered.
The error paths use a closed port and the real app served without a run folder.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from sagellm_obs.cli import app
from sagellm_obs.frames import load
from sagellm_obs.watch import EndpointError, server_run_dir

if TYPE_CHECKING:
    from conftest import ServerHarness

pytestmark = pytest.mark.engine


def _complete(harness: ServerHarness, n: int) -> list[str]:
    ids = []
    with harness.client() as c:
        for i in range(n):
            body = {"model": harness.model, "prompt": f"count to {i}", "max_tokens": 4}
            resp = c.post("/v1/completions", json=body)
            assert resp.status_code == 200, resp.text
            ids.append(resp.json()["id"])
    harness.flush()
    return ids


def test_live_url_shows_the_servers_requests(harness: ServerHarness) -> None:
    from sagellm_obs.explore import live

    # every=3600: the test refreshes by hand, the thread never does.
    view = live(harness.url, api_key=harness.api_key, every=3600, window_s=None)
    try:
        assert view.tail.path.resolve() == harness.run_dir.resolve()
        ids = _complete(harness, 3)
        view.refresh()
        full = load(harness.run_dir, cache=False)
        seen = set(view.tail.frames.requests["request_id"].to_list())
        assert set(ids) <= seen  # the requests the server answered are in the view
        assert view.snapshot is not None
        assert view.snapshot.requests == full.requests.height >= 3
        assert view.tail.frames.steps.height == full.steps.height > 0
        assert f"{full.requests.height:,} requests finished" in view.status.value
        assert str(harness.telemetry.run_id) in view.status.value
    finally:
        view.stop()


def test_watch_endpoint_prints_the_servers_run(harness: ServerHarness) -> None:
    _complete(harness, 1)
    args = ["watch", "--endpoint", harness.url, "--once", "--window", "0"]
    done = CliRunner().invoke(
        app, args, env={"COLUMNS": "200", "SAGELLM_OBS_API_KEY": "test-key-123"}
    )
    assert done.exit_code == 0, done.output
    assert str(harness.telemetry.run_id) in done.output
    assert str(harness.run_dir.resolve()) in done.output.replace("\n", "")
    finished = load(harness.run_dir, cache=False).requests.height
    assert f"{finished:,} finished" in done.output
    wrong = CliRunner().invoke(app, [*args, "--api-key", "nope"], env={"COLUMNS": "200"})
    assert wrong.exit_code == 1 and "refused the key" in wrong.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_is_named() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(EndpointError, match=f"no server answers at {url}"):
        server_run_dir(url, timeout=2)
    done = CliRunner().invoke(app, ["watch", "--endpoint", url], env={"COLUMNS": "300"})
    assert done.exit_code == 1 and f"no server answers at {url}" in done.output
    both = CliRunner().invoke(app, ["watch", "run-dir", "--endpoint", url])
    assert both.exit_code == 2 and "one of them" in both.output


@pytest.fixture
def storeless_server() -> Iterator[str]:
    """The real app (no engine: its run-info route does not use one) served by uvicorn on
    loopback, with a telemetry whose store is off."""
    import uvicorn

    from sagellm_obs.engine.config import EngineConfig
    from sagellm_obs.server import create_app
    from sagellm_obs.telemetry import configure

    tel = configure(run_dir=False, engine_id="no-store", otlp_endpoint=False, make_current=False)
    engine = SimpleNamespace(telemetry=tel, model_name="m", config=EngineConfig())
    server = uvicorn.Server(
        uvicorn.Config(create_app(engine), host="127.0.0.1", port=0, log_level="warning")  # type: ignore[arg-type]
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            threading.Event().wait(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        tel.shutdown()


def test_a_server_without_a_run_folder_says_so(storeless_server: str) -> None:
    with pytest.raises(EndpointError, match="keeps no run folder"):
        server_run_dir(storeless_server)
    not_serve = f"{storeless_server}/not-here"  # a server without the route: not sagellm-obs
    with pytest.raises(EndpointError, match=r"not a sagellm-obs serve.*not /metrics"):
        server_run_dir(not_serve)
