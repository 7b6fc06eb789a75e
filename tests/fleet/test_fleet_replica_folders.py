"""A client run finds its replicas' run folders from its manifest (no engine: real run folders
written by the store, a real Starlette request for the peer check)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from sagellm_obs import semconv as sc
from sagellm_obs.frames import load, scan
from sagellm_obs.frames.replicas import MissingReplicasWarning, with_replicas
from sagellm_obs.store.run import RunStore


def _run(path: Path, run_id: str, **manifest: object) -> Path:
    store = RunStore(path, run_id=run_id)
    if manifest:
        store.update_manifest(**manifest)
    store.close()
    return path


def _replica(endpoint: str, run_dir: Path, run_id: str) -> dict[str, object]:
    return {
        "endpoint": endpoint,
        "engine_id": endpoint.removeprefix("http://"),
        "run_id": run_id,
        "run_dir": str(run_dir.resolve()),
        "model": "tiny",
        "data_parallel_size": 1,
    }


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[Path, Path, Path]:
    a = _run(tmp_path / "a" / "run", "run-a")
    b = _run(tmp_path / "b" / "run", "run-b")
    client = _run(
        tmp_path / "client",
        "run-client",
        replicas=[
            _replica("http://127.0.0.1:1", a, "run-a"),
            _replica("http://127.0.0.1:2", b, "run-b"),
        ],
    )
    return client, a, b


def test_the_client_run_brings_its_replicas(fleet: tuple[Path, Path, Path]) -> None:
    client, a, b = fleet
    found = with_replicas([client])
    assert found.paths == [client, a, b] and not found.missing
    # Listed already: not twice.
    assert with_replicas([client, b]).paths == [client, b, a]
    frames = load(client, cache=False)
    assert frames.runs["run_id"].to_list() == ["run-client", "run-a", "run-b"]
    assert frames.manifest["run_id"] == "run-client"  # the one source given
    alone = load(client, cache=False, replicas=False)
    assert alone.runs["run_id"].to_list() == ["run-client"]


def test_moved_runs_are_found_beside_the_client(
    fleet: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    client, a, b = fleet
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for src, name in ((client, "client"), (a, "run-a"), (b, "run-b")):
        shutil.move(src, moved / name)  # folders named by run id, as sagellm-runs/ does
    found = with_replicas([moved / "client"])
    assert found.paths == [moved / "client", moved / "run-a", moved / "run-b"]


def test_missing_replicas_are_named_once(fleet: tuple[Path, Path, Path]) -> None:
    client, _, b = fleet
    shutil.rmtree(b)
    _run(b, "someone-else")  # the same path, another run: not the replica
    with pytest.warns(MissingReplicasWarning) as caught:
        frames = load(client, cache=False)
    assert len(caught) == 1 and caught[0].filename == __file__  # at the caller's line
    text = str(caught[0].message)
    assert "1 replica run folder(s) not found" in text and "run-b" in text and "127.0.0.1:2" in text
    assert frames.runs["run_id"].to_list() == ["run-client", "run-a", "run-b"]
    with pytest.warns(MissingReplicasWarning) as caught:
        scan(client, cache=False)
    assert len(caught) == 1 and caught[0].filename == __file__
    problems = frames.runs["problem"].to_list()
    assert problems[:2] == [None, None] and "run-b" in problems[2]


def test_the_route_tells_the_run_folder_to_this_machine_only(tmp_path: Path) -> None:
    """GET /v1/sagellm/run through the real app and a real telemetry with a run folder; only the
    peer address differs (the engine is not used by this route)."""
    from sagellm_obs.engine.config import EngineConfig
    from sagellm_obs.server import create_app
    from sagellm_obs.telemetry import configure

    tel = configure(
        run_dir=tmp_path / "replica", engine_id="replica-1", otlp_endpoint=False, make_current=False
    )
    engine = SimpleNamespace(telemetry=tel, model_name="m", config=EngineConfig())
    app = create_app(engine, api_key="k")  # type: ignore[arg-type]

    async def get(peer: str, key: str | None = "k") -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(peer, 5000))
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
            return await http.get(sc.RUN_INFO_ROUTE, headers=headers)

    try:
        local, v6, remote, nokey = (
            asyncio.run(get("127.0.0.1")),
            asyncio.run(get("::1")),
            asyncio.run(get("10.1.2.3")),
            asyncio.run(get("127.0.0.1", None)),
        )
        want = {
            "engine_id": "replica-1",
            "run_id": tel.run_id,
            "model": "m",
            "data_parallel_size": 1,
            "run_dir": str((tmp_path / "replica").resolve()),
        }
        assert local.json() == want and v6.json() == want
        assert remote.json() == {**want, "run_dir": None}
        assert nokey.status_code == 401
        manifest = (tmp_path / "replica" / "manifest.json").read_text()
        assert tel.run_id is not None and tel.run_id in manifest
    finally:
        tel.shutdown()


def test_a_server_without_the_route_is_recorded_with_its_problem() -> None:
    """vLLM's own server (or any OpenAI-compatible one) has no /v1/sagellm/run: the run goes on."""
    from fastapi import FastAPI

    from sagellm_obs.workload.replica_info import ask_replica

    async def ask() -> dict[str, object]:
        transport = httpx.ASGITransport(app=FastAPI())
        async with httpx.AsyncClient(transport=transport) as http:
            return await ask_replica(http, "http://vllm:8000")

    entry = asyncio.run(ask())
    assert entry["endpoint"] == "http://vllm:8000" and entry["run_dir"] is None
    assert "HTTP 404" in str(entry["problem"])


def test_explore_and_summary_join_them_too(fleet: tuple[Path, Path, Path]) -> None:
    from sagellm_obs.explore.data import load_run
    from sagellm_obs.run_summary import summarize

    client, a, b = fleet
    assert load_run("client", client).frames.runs["path"].to_list() == [
        str(client),
        str(a.resolve()),
        str(b.resolve()),
    ]
    assert summarize(client).requests == 0  # empty runs: nothing, and no error
