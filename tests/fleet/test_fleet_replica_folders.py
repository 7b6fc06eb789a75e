"""A client run finds its replicas' run folders from its manifest (no engine: real run folders
written by the store, a real Starlette request for the peer check)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from starlette.requests import Request

from sagellm_obs.frames import load
from sagellm_obs.frames.replicas import MissingReplicasWarning, with_replicas
from sagellm_obs.server.app import _loopback_peer
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
    assert len(caught) == 1
    text = str(caught[0].message)
    assert "1 replica run folder(s) not found" in text and "run-b" in text and "127.0.0.1:2" in text
    assert frames.runs["run_id"].to_list() == ["run-client", "run-a", "run"]
    problems = frames.runs["problem"].to_list()
    assert problems[:2] == [None, None] and "run-b" in problems[2]


def _request(host: str) -> Request:
    return Request(
        {"type": "http", "method": "GET", "path": "/", "headers": [], "client": (host, 1)}
    )


def test_only_a_loopback_peer_is_told_the_run_folder() -> None:
    assert _loopback_peer(_request("127.0.0.1")) and _loopback_peer(_request("::1"))
    assert not _loopback_peer(_request("10.1.2.3"))
    assert not _loopback_peer(_request("testclient"))
