"""DSNs and connections: parsing, chdb's one path per process, and an unreachable server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sagellm_obs import frames
from sagellm_obs.clickhouse.connect import (
    DSN,
    ChdbConnection,
    ClickHouseConnectionError,
    connect,
    is_dsn,
    open_chdb,
    parse_dsn,
)
from sagellm_obs.clickhouse.write import export_clickhouse
from tests.clickhouse.conftest import need_clickhouse


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "clickhouse://bob:s%40cret@ch.example:9123/otel",
            DSN("server", "otel", "ch.example", 9123, "bob", "s@cret", False),
        ),
        ("clickhouse://localhost", DSN("server", "default", "localhost", 8123, "default", "")),
        ("clickhouses://u@h/db", DSN("server", "db", "h", 8443, "u", "", True)),
        ("clickhouse://h:8443?secure=true&database=x", DSN("server", "x", "h", 8443, secure=True)),
        ("chdb:runs.chdb", DSN("chdb", path="runs.chdb")),
        ("chdb:///abs/runs?database=otel", DSN("chdb", "otel", path="/abs/runs")),
        ("chdb://rel/runs", DSN("chdb", path="rel/runs")),
    ],
)
def test_parse_dsn(text: str, want: DSN) -> None:
    assert is_dsn(text)
    assert parse_dsn(text) == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("postgres://x", "not a ClickHouse DSN"),
        ("chdb:", "without a database folder"),
        ("clickhouse://h:99999999/db", "bad port"),
        ("clickhouse://u:pw@h/db?colour=red", "unknown option"),
    ],
)
def test_bad_dsn(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_dsn(text)
    assert ":pw@" not in str(info.value)


def test_redacted_hides_the_password() -> None:
    dsn = parse_dsn("clickhouse://bob:hunter2@h:8123/otel")
    assert dsn.redacted() == "clickhouse://bob:***@h:8123/otel"
    assert "hunter2" not in repr(dsn.redacted())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_listening_gives_a_clear_error() -> None:
    need_clickhouse()
    port = _free_port()
    t0 = time.monotonic()
    with pytest.raises(ClickHouseConnectionError) as info:
        frames.load(f"clickhouse://bob:hunter2@127.0.0.1:{port}/otel")
    text = str(info.value)
    assert text.startswith(f"cannot reach ClickHouse at clickhouse://bob:***@127.0.0.1:{port}/otel")
    assert "hunter2" not in text
    assert "refused" in text.lower()  # the real reason, not a client-side mistake
    assert time.monotonic() - t0 < 30


def test_something_else_listening_gives_a_clear_error() -> None:
    """An HTTP server that is not ClickHouse (here: one that answers 404 to everything)."""
    need_clickhouse()
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class NotClickHouse(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), NotClickHouse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with pytest.raises(
            ClickHouseConnectionError, match=f"cannot reach ClickHouse at .*:{port}/"
        ):
            frames.load(f"clickhouse://127.0.0.1:{port}/otel")
    finally:
        server.shutdown()
        server.server_close()


def test_export_to_nothing_listening(tmp_path_factory: pytest.TempPathFactory) -> None:
    need_clickhouse()
    from tests.frames.frames_otlp import write_run

    run = write_run(tmp_path_factory.mktemp("run") / "r", [[{"i": 0}]])
    with pytest.raises(ClickHouseConnectionError, match="cannot reach ClickHouse"):
        export_clickhouse(run.path, f"clickhouse://127.0.0.1:{_free_port()}/otel")


def test_connect_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="not a ClickHouse connection"):
        connect(42)
    with pytest.raises(TypeError, match="not a ClickHouse connection"):
        frames.clickhouse_source(object())


def test_a_chdb_session_object_is_a_source(chdb_path: str, chdb: ChdbConnection) -> None:
    # The session the caller holds is used as it is (not closed, not reopened).
    session = chdb.session
    conn, database = connect(session)
    assert isinstance(conn, ChdbConnection) and conn.session is session and database is None
    assert open_chdb(chdb_path).session is session


def test_importing_frames_imports_no_clickhouse_client() -> None:
    code = (
        "import sys, sagellm_obs, sagellm_obs.frames, sagellm_obs.clickhouse.source;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('chdb', 'clickhouse_connect')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_chdb_path_per_process(chdb_path: str, chdb: ChdbConnection, tmp_path: Path) -> None:
    from chdb import session as chdb_session

    from sagellm_obs.clickhouse.connect import ClickHouseError, close_chdb

    # Asking for another folder closes the session this module opened, then opens the other.
    other = open_chdb(tmp_path / "other")
    other.command("CREATE DATABASE IF NOT EXISTS elsewhere")
    assert open_chdb(chdb_path).session is not chdb.session
    # A session the caller opened on another folder is not closed for us: a clear error.
    close_chdb()
    theirs = chdb_session.Session(str(tmp_path / "theirs"))
    try:
        with pytest.raises(ClickHouseError, match="one database path per process"):
            open_chdb(chdb_path)
    finally:
        theirs.close()
    assert open_chdb(chdb_path).query_arrow("SELECT 1 AS x").column("x")[0].as_py() == 1


def test_reading_a_missing_chdb_folder_creates_nothing(
    chdb: ChdbConnection, chdb_path: str, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.chdb"
    with pytest.raises(FileNotFoundError, match="no chdb database folder"):
        frames.load(f"chdb:{missing}")
    assert not missing.exists()
    assert open_chdb(chdb_path).session is chdb.session  # the open session was left alone
