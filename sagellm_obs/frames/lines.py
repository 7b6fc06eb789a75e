"""Decode a JSON-lines file into one row per line, fast, with exact errors for bad lines.

The fast path hands the whole file to a native NDJSON decoder with an explicit schema
(:mod:`pyarrow.json` when installed: several times faster than ``pl.read_ndjson`` on nested
OTLP; ``pl.read_ndjson`` otherwise). When it rejects the file, or the row count shows blank
lines, the file is read again with the store's tolerant reader
(:func:`~sagellm_obs.store.iter_jsonl`) and :func:`~sagellm_obs.frames.wire.normalize`, which
names the bad line (``errors="raise"``) or skips and counts it (``errors="skip"``). A torn last
line (no trailing newline, not a JSON object) is always skipped and reported, as the store's
reader does.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from sagellm_obs.frames import wire
from sagellm_obs.store.reader import Errors, ReadReport, StoreFormatError, StoreWarning, iter_jsonl

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

_log = logging.getLogger(__name__)

LINE = "source_line"
"""Name of the 1-based line-number column added to every decoded frame."""

Check = Callable[[Mapping[str, Any]], None]
"""Raises :class:`~sagellm_obs.frames.wire.ShapeError` for a line of the wrong shape."""

TORN = "torn last line (incomplete write)"
"""The reason recorded for a torn last line, as :func:`~sagellm_obs.store.iter_jsonl` words it."""

_MIN_BLOCK = 1 << 20
_MAX_BLOCK = (1 << 31) - 1
# A line whose value is JSON ``null`` (whitespace or a BOM before it): pyarrow's JSON reader
# dereferences a null pointer when a block starts with one (apache/arrow#47409).
_NULL_FIRST = re.compile(rb"[\s\xef\xbb\xbf]*null")
_NULL_LINE = re.compile(rb"\n[\s\xef\xbb\xbf]*null")


def read_lines(
    path: Path,
    schema: pl.Schema,
    *,
    errors: Errors,
    report: ReadReport,
    check: Check,
    suspect: pl.Expr,
    data: bytes | None = None,
    first_line: int = 1,
) -> pl.DataFrame:
    """Decode ``path`` into ``schema`` plus :data:`LINE`, one row per JSON line.

    Args:
        path: The file.
        schema: The wire schema of a line (see :mod:`~sagellm_obs.frames.wire`).
        errors: ``"raise"`` a :class:`StoreFormatError` naming file and line, or ``"skip"``.
        report: Collects skipped lines (torn last lines always, bad lines with ``"skip"``).
        check: Validates a decoded line whose row matches ``suspect``.
        suspect: Rows that may be lines of another shape (e.g. every field null), checked with
            ``check`` on the original JSON.
        data: The bytes to decode, when they are in memory already (default: the whole file).
        first_line: The line number of the first line of ``data``.

    Returns:
        The decoded rows, in file order.
    """
    if data is None:
        data = path.read_bytes()
    fast = _fast(data, schema, first_line)
    if fast is None:
        return _tolerant(
            path, schema, errors=errors, report=report, check=check, data=data, first=first_line
        )
    df, torn = fast
    if torn is not None:
        report.add(path, torn, TORN)
    bad = df.filter(suspect)
    if bad.height:
        lines = data.split(b"\n")
        drop: list[int] = []
        for lineno in bad[LINE].to_list():
            try:
                obj = json.loads(lines[lineno - first_line])
                if not isinstance(obj, dict):
                    raise wire.ShapeError(f"expected a JSON object, got {type(obj).__name__}")
                check(obj)
            except (ValueError, UnicodeDecodeError) as exc:  # ShapeError is a ValueError
                if errors == "raise":
                    raise StoreFormatError(path, lineno, str(exc)) from None
                report.add(path, lineno, str(exc))
                drop.append(lineno)
        if drop:
            df = df.filter(~pl.col(LINE).is_in(drop))
    return df


def _fast(
    data: bytes, schema: pl.Schema, first_line: int = 1
) -> tuple[pl.DataFrame, int | None] | None:
    """Decode ``data`` natively; None when the tolerant path must decide."""
    torn: int | None = None
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        if tail.strip():
            try:
                complete = isinstance(json.loads(tail), dict)
            except ValueError:
                complete = False
            if not complete:
                torn = data.count(b"\n", 0, cut) + first_line
                data = data[:cut]
    if not data or data.isspace():  # as ``not data.strip()``, without copying the file
        return _empty(schema), torn
    expected = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    try:
        df = decode(wire.replace_enum_names(data), schema)
    except Exception as exc:  # any decoder complaint: let the tolerant path name the line
        _log.debug("fast JSON-lines decode failed (%s); reading line by line", exc)
        return None
    if df.height != expected:  # blank lines: row numbers would not be line numbers
        return None
    lines = pl.int_range(first_line, first_line + df.height, dtype=pl.Int64)
    return df.with_columns(lines.alias(LINE)), torn


def _tolerant(
    path: Path,
    schema: pl.Schema,
    *,
    errors: Errors,
    report: ReadReport,
    check: Check,
    data: bytes,
    first: int,
) -> pl.DataFrame:
    """Read line by line: exact errors, coerced variants, then decode what is good."""
    good: list[tuple[int, dict[str, Any]]] = []
    with warnings.catch_warnings():
        # The torn line is in ``report``; the loader warns once for everything it skipped.
        warnings.simplefilter("ignore", StoreWarning)
        for lineno, obj in iter_jsonl(
            path, errors=errors, report=report, data=data, first_line=first
        ):
            try:
                check(obj)
                good.append((lineno, wire.normalize(obj, schema)))
            except wire.ShapeError as exc:
                if errors == "raise":
                    raise StoreFormatError(path, lineno, str(exc)) from None
                report.add(path, lineno, str(exc))
    if not good:
        return _empty(schema)
    numbers = pl.Series(LINE, [n for n, _ in good], dtype=pl.Int64)
    try:
        df = decode(_dumps([o for _, o in good]), schema)
        if df.height != len(good):
            raise ValueError(f"decoded {df.height} rows from {len(good)} lines")
    except Exception:
        # Normalised lines should always decode; find any that do not, one by one.
        return _one_by_one(path, schema, good, errors=errors, report=report)
    return df.with_columns(numbers)


def _one_by_one(
    path: Path,
    schema: pl.Schema,
    good: list[tuple[int, dict[str, Any]]],
    *,
    errors: Errors,
    report: ReadReport,
) -> pl.DataFrame:
    frames = []
    for lineno, obj in good:
        try:
            frames.append(
                decode(_dumps([obj]), schema).with_columns(pl.lit(lineno, pl.Int64).alias(LINE))
            )
        except Exception as exc:
            msg = f"cannot decode line: {exc}"
            if errors == "raise":
                raise StoreFormatError(path, lineno, msg) from None
            report.add(path, lineno, msg)
    return pl.concat(frames) if frames else _empty(schema)


def _dumps(objects: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in objects).encode()


def _empty(schema: pl.Schema) -> pl.DataFrame:
    return pl.DataFrame(schema={**schema, LINE: pl.Int64})


def decode(data: bytes, schema: pl.Schema, engine: str = "auto") -> pl.DataFrame:
    """Decode NDJSON bytes into exactly ``schema``, ignoring undeclared keys; raise if bad.

    Args:
        data: The lines.
        schema: The wire schema.
        engine: ``"pyarrow"`` (when installed, the default) or ``"polars"``.
    """
    arrow = _pyarrow() if engine in ("auto", "pyarrow") else None
    if arrow is None:
        return pl.read_ndjson(io.BytesIO(data), schema=schema)
    if _NULL_FIRST.match(data) or _NULL_LINE.search(data):
        raise ValueError("a line is JSON null")  # never handed to pyarrow: it would crash
    pa, pj = arrow

    arrow_schema = pa.schema([(name, _arrow(dtype)) for name, dtype in schema.items()])
    parse = pj.ParseOptions(explicit_schema=arrow_schema, unexpected_field_behavior="ignore")
    threads = os.cpu_count() or 1
    block = min(max(len(data) // (2 * threads) + 1, _MIN_BLOCK), _MAX_BLOCK)
    try:
        table = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(block_size=block),
            parse_options=parse,
        )
    except pa.ArrowInvalid as exc:
        if "straddl" not in str(exc) or block >= _MAX_BLOCK:
            raise
        # A line longer than a block: one block for the whole file.
        table = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(block_size=min(len(data) + 1, _MAX_BLOCK)),
            parse_options=parse,
        )
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df.cast(dict(schema.items()))


def _pyarrow() -> tuple[Any, Any] | None:
    """``(pyarrow, pyarrow.json)``, or None when pyarrow is not installed."""
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.json")
    except ImportError:  # pragma: no cover - pyarrow is optional
        return None


def _arrow(dtype: PolarsDataType) -> Any:
    pa = importlib.import_module("pyarrow")

    if isinstance(dtype, pl.Struct):
        return pa.struct([(f.name, _arrow(f.dtype)) for f in dtype.fields])
    if isinstance(dtype, pl.List):
        return pa.list_(_arrow(dtype.inner))
    simple = {
        pl.String: pa.string(),
        pl.Int64: pa.int64(),
        pl.Float64: pa.float64(),
        pl.Boolean: pa.bool_(),
    }
    for pdt, adt in simple.items():
        if dtype == pdt:
            return adt
    raise TypeError(f"no Arrow type for wire dtype {dtype}")  # pragma: no cover
