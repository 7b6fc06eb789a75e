"""Reaching ClickHouse: DSNs, and one small interface over chdb and clickhouse-connect.

Two engines run the same SQL: a ClickHouse server through ``clickhouse-connect`` (HTTP), and
``chdb``, ClickHouse in-process. :class:`Connection` is what the reader, the writer and the
pushed-down queries use: ``query_arrow``, ``command`` and ``insert_arrow``. Neither client is
imported until a connection is opened (``pip install 'sagellm-obs[clickhouse]'``).

chdb runs one embedded server per process, bound to one database path: a session on another
path fails until the first is closed. :func:`open_chdb` keeps the session it opened and closes
it when asked for another path; a session the caller opened is used as it is.
"""

from __future__ import annotations

import importlib
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    import pyarrow as pa

DEFAULT_DATABASE = "default"
"""The exporter's default database (its ``database`` option)."""

HTTP_PORT, HTTPS_PORT = 8123, 8443


class ClickHouseError(RuntimeError):
    """A ClickHouse source or target that cannot be used: the message says which and why."""


class ClickHouseConnectionError(ClickHouseError):
    """The server could not be reached, or refused the credentials."""


@dataclass(frozen=True)
class DSN:
    """A parsed ClickHouse address.

    ``clickhouse://user:password@host:8123/database`` (``clickhouses://`` or ``?secure=true`` for
    HTTPS) is a server reached by clickhouse-connect; ``chdb:PATH`` or ``chdb://PATH`` a chdb
    database folder (``?database=NAME`` picks the database inside it).
    """

    engine: str  # "server" or "chdb"
    database: str = DEFAULT_DATABASE
    host: str = "localhost"
    port: int = HTTP_PORT
    user: str = "default"
    password: str = ""
    secure: bool = False
    path: str = ""  # chdb's database folder

    def redacted(self) -> str:
        """The address without its password, for messages."""
        if self.engine == "chdb":
            return f"chdb:{self.path}?database={self.database}"
        scheme = "clickhouses" if self.secure else "clickhouse"
        auth = f"{self.user}:***@" if self.password else f"{self.user}@"
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.database}"


_SCHEMES = ("clickhouse://", "clickhouses://", "chdb:")


def is_dsn(text: object) -> bool:
    """True for a string that names a ClickHouse source (see :class:`DSN`)."""
    return isinstance(text, str) and text.startswith(_SCHEMES)


def parse_dsn(text: str) -> DSN:
    """Parse a ClickHouse DSN (see :class:`DSN`).

    Raises:
        ValueError: Not a ClickHouse DSN, or a bad port or option.
    """
    if text.startswith("chdb:"):
        rest = text[len("chdb:") :]
        if rest.startswith("//"):
            rest = rest[2:]
        path, _, query = rest.partition("?")
        if not path:
            raise ValueError(f"{text!r}: chdb DSN without a database folder (chdb:PATH)")
        options = _options(query, text)
        return DSN(
            "chdb",
            database=options.pop("database", DEFAULT_DATABASE),
            path=unquote(path),
        )
    if not text.startswith(("clickhouse://", "clickhouses://")):
        raise ValueError(f"{text!r} is not a ClickHouse DSN (clickhouse://... or chdb:PATH)")
    parts = urlsplit(text)
    options = _options(parts.query, text)
    secure = parts.scheme == "clickhouses" or options.pop("secure", "false").lower() in (
        "1",
        "true",
        "yes",
    )
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{_redact(text)}: bad port ({exc})") from None
    database = unquote(parts.path.lstrip("/")) or options.pop("database", DEFAULT_DATABASE)
    return DSN(
        "server",
        database=database,
        host=parts.hostname or "localhost",
        port=port or (HTTPS_PORT if secure else HTTP_PORT),
        user=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else "",
        secure=secure,
    )


def _options(query: str, text: str) -> dict[str, str]:
    parsed = parse_qs(query, keep_blank_values=True)
    out = {key: values[-1] for key, values in parsed.items()}
    unknown = sorted(set(out) - {"database", "secure"})
    if unknown:
        raise ValueError(f"{_redact(text)}: unknown option(s) {', '.join(unknown)}")
    return out


def _redact(text: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)


# --- the connection interface -------------------------------------------------------------------


class Connection(Protocol):
    """What the reader and writer need from a ClickHouse engine."""

    name: str
    """Where it points (no password), for messages."""

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a SELECT with ``{name:Type}`` parameters; the rows as an Arrow table."""
        ...

    def command(self, sql: str) -> None:
        """Run a statement without rows (DDL)."""
        ...

    def insert_arrow(self, database: str, table: str, data: pa.Table) -> None:
        """Insert ``data``'s columns (by name) into ``database.table``."""
        ...


def quote_ident(name: str) -> str:
    """A ClickHouse identifier in backticks."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _literal(value: Any) -> str:
    """A parameter value in the text form ClickHouse parses for ``{name:Type}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"parameter {value!r} is not finite")
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Sequence):
        items = ("'" + _literal(v).replace("\\", "\\\\").replace("'", "\\'") + "'" for v in value)
        return "[" + ",".join(items) + "]"
    raise TypeError(f"unsupported parameter type {type(value).__name__}")


class ChdbConnection:
    """A chdb session (``chdb.session.Session`` or ``chdb.connect()``) as a :class:`Connection`."""

    def __init__(self, session: Any, name: str = "chdb") -> None:
        self.session = session
        self.name = name

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        text = {k: _literal(v) for k, v in (params or {}).items()}
        try:
            out = self.session.query(sql, "ArrowTable", params=text) if text else None
            if out is None:
                out = self.session.query(sql, "ArrowTable")
        except Exception as exc:
            raise ClickHouseError(f"{self.name}: {_first_line(exc)}") from exc
        return _arrow(out, self.name)

    def command(self, sql: str) -> None:
        try:
            self.session.query(sql, "CSV")
        except Exception as exc:
            raise ClickHouseError(f"{self.name}: {_first_line(exc)}") from exc

    def insert_arrow(self, database: str, table: str, data: pa.Table) -> None:
        columns = ", ".join(quote_ident(c) for c in data.column_names)
        # chdb's Python() table function finds the Arrow table by its variable name in this frame.
        sagellm_rows = data  # noqa: F841 - read by name inside chdb
        sql = (
            f"INSERT INTO {quote_ident(database)}.{quote_ident(table)} ({columns}) "
            "SELECT * FROM Python(sagellm_rows)"
        )
        try:
            self.session.query(sql, "CSV")
        except Exception as exc:
            raise ClickHouseError(f"{self.name}: {_first_line(exc)}") from exc


class HttpConnection:
    """A ``clickhouse_connect`` client as a :class:`Connection`."""

    def __init__(self, client: Any, name: str = "clickhouse") -> None:
        self.client = client
        self.name = name

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        try:
            out = self.client.query_arrow(sql, parameters=dict(params or {}), use_strings=True)
        except Exception as exc:
            raise ClickHouseError(f"{self.name}: {_first_line(exc)}") from exc
        return _arrow(out, self.name)

    def command(self, sql: str) -> None:
        try:
            self.client.command(sql)
        except Exception as exc:
            raise ClickHouseError(f"{self.name}: {_first_line(exc)}") from exc

    def insert_arrow(self, database: str, table: str, data: pa.Table) -> None:
        try:
            self.client.insert_arrow(table, data, database=database)
        except Exception as exc:
            raise ClickHouseError(f"{self.name}: {_first_line(exc)}") from exc


def _arrow(out: Any, name: str) -> pa.Table:
    import pyarrow as pa  # a core dependency, imported when rows arrive

    if not isinstance(out, pa.Table):  # pragma: no cover - both clients return Arrow here
        raise ClickHouseError(f"{name}: the client returned {type(out).__name__}, not Arrow")
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


# --- opening --------------------------------------------------------------------------------------


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module} is not installed: pip install 'sagellm-obs[clickhouse]' ({exc})"
        ) from exc


_lock = threading.Lock()
_owned: dict[str, Any] = {}  # the chdb session this module opened: {"path": ..., "session": ...}


def open_chdb(path: str | Path, *, create: bool = True) -> ChdbConnection:
    """A connection to the chdb database folder ``path`` (created when missing and ``create``).

    The session is kept for the process and reused for the same path; asking for another path
    closes it first (chdb binds one path per process).

    Raises:
        FileNotFoundError: ``path`` does not exist and ``create`` is false.
        ClickHouseError: chdb is already bound to another path by a session this module did not
            open.
    """
    session_mod = _require("chdb.session")
    folder = str(Path(path).expanduser().resolve())
    with _lock:
        if _owned.get("path") == folder:
            return ChdbConnection(_owned["session"], f"chdb:{folder}")
        if not create and not Path(folder).is_dir():
            raise FileNotFoundError(f"no chdb database folder at {folder}")
        if _owned:
            _owned["session"].close()
            _owned.clear()
        Path(folder).mkdir(parents=True, exist_ok=True)
        try:
            session = session_mod.Session(folder)
        except Exception as exc:
            raise ClickHouseError(
                f"cannot open chdb at {folder}: {_first_line(exc)} (chdb serves one database "
                "path per process: close the other session first)"
            ) from exc
        _owned.update(path=folder, session=session)
        return ChdbConnection(session, f"chdb:{folder}")


def close_chdb() -> None:
    """Close the chdb session :func:`open_chdb` opened, if any."""
    with _lock:
        if _owned:
            _owned["session"].close()
            _owned.clear()


def open_server(dsn: DSN, *, connect_timeout: float = 5.0) -> HttpConnection:
    """A clickhouse-connect client for ``dsn`` (it pings the server on creation).

    Raises:
        ClickHouseConnectionError: Nothing answers at the address, or the login fails.
    """
    cc = _require("clickhouse_connect")
    try:
        client = cc.get_client(
            host=dsn.host,
            port=dsn.port,
            username=dsn.user,
            password=dsn.password,
            database=dsn.database,
            secure=dsn.secure,
            connect_timeout=connect_timeout,
            send_receive_timeout=max(connect_timeout, 300.0),
        )
    except Exception as exc:
        raise ClickHouseConnectionError(
            f"cannot reach ClickHouse at {dsn.redacted()}: {_first_line(exc)}"
        ) from exc
    return HttpConnection(client, dsn.redacted())


def connect(target: Any, *, create: bool = True) -> tuple[Connection, str | None]:
    """A :class:`Connection` for a DSN or a client object, and the DSN's database (if any).

    ``target`` is a DSN string, a ``clickhouse_connect`` client, a chdb session or connection,
    or a :class:`Connection` already. A chdb folder that does not exist is created only when
    ``create`` (the writer; readers get a FileNotFoundError).

    Raises:
        TypeError: ``target`` is none of these.
    """
    if isinstance(target, str):
        dsn = parse_dsn(target)
        if dsn.engine == "chdb":
            return open_chdb(dsn.path, create=create), dsn.database
        return open_server(dsn), dsn.database
    if isinstance(target, ChdbConnection | HttpConnection):
        return target, None
    module = type(target).__module__
    if module.startswith("chdb"):
        return ChdbConnection(target), None
    if module.startswith("clickhouse_connect"):
        database = getattr(target, "database", None)
        return HttpConnection(target, f"clickhouse:{getattr(target, 'url', '?')}"), database
    raise TypeError(
        "not a ClickHouse connection: expected a DSN (clickhouse://... or chdb:PATH), a "
        f"clickhouse_connect client or a chdb session, got {type(target).__name__}"
    )


def is_connection(obj: object) -> bool:
    """True for a DSN string or a client object :func:`connect` accepts (imports neither client)."""
    if is_dsn(obj):
        return True
    if isinstance(obj, ChdbConnection | HttpConnection):
        return True
    module = type(obj).__module__
    return module.startswith(("chdb", "clickhouse_connect"))
