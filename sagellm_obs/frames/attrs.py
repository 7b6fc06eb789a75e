"""Expressions over OTLP ``KeyValue`` lists: typed lookups, text and JSON renderings.

All of them work column-wise on the decoded ``List(Struct{key, value: AnyValue})`` columns, so a
million spans cost a few vectorised passes, not a Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl


def _field(v: pl.Expr, name: str) -> pl.Expr:
    return v.struct.field(name)


def lookup(col: pl.Expr, key: str) -> pl.Expr:
    """The ``AnyValue`` struct of attribute ``key`` in KeyValue list ``col`` (null if absent)."""
    return (
        col.list.eval(pl.element().filter(pl.element().struct.field("key") == key))
        .list.first()
        .struct.field("value")
    )


def as_dtype(v: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """An ``AnyValue`` struct as ``dtype``, accepting the other encodings a producer may use.

    Strings read the first array element when the value is an array (finish reasons).
    """
    s, i, d, b = (_field(v, n) for n in ("stringValue", "intValue", "doubleValue", "boolValue"))
    if dtype == pl.Int64:
        return pl.coalesce(
            i.cast(pl.Int64, strict=False),
            d.cast(pl.Int64, strict=False),
            s.cast(pl.Int64, strict=False),
        )
    if dtype == pl.Float64:
        return pl.coalesce(d, i.cast(pl.Float64, strict=False), s.cast(pl.Float64, strict=False))
    if dtype == pl.Boolean:
        return pl.coalesce(b, s.str.to_lowercase().replace_strict(_BOOL_TEXT, default=None))
    first = _field(v, "arrayValue").struct.field("values").list.first()
    return pl.coalesce(scalar_text(v), scalar_text(first))


_BOOL_TEXT = {"true": True, "false": False}


def scalar_text(v: pl.Expr) -> pl.Expr:
    """A scalar ``AnyValue`` as text: strings as is, numbers in decimal, ``true``/``false``."""
    return pl.coalesce(
        _field(v, "stringValue"),
        _field(v, "intValue"),
        _field(v, "doubleValue").cast(pl.String),
        _field(v, "boolValue").cast(pl.String),
    )


def _json_string(x: pl.Expr) -> pl.Expr:
    """``x`` (String) as a JSON string literal, escaped by polars' JSON encoder."""
    return pl.struct(x.alias("v")).struct.json_encode().str.slice(5).str.head(-1)


def _array_json(v: pl.Expr) -> pl.Expr:
    values = _field(v, "arrayValue").struct.field("values")
    encoded = _json_string(values.list.eval(scalar_text(pl.element())))
    return pl.when(values.is_not_null()).then(encoded)


def text(v: pl.Expr) -> pl.Expr:
    """An ``AnyValue`` as text; arrays as a JSON array of strings; null if empty or unknown."""
    return pl.coalesce(scalar_text(v), _array_json(v))


def json_value(v: pl.Expr) -> pl.Expr:
    """An ``AnyValue`` as a JSON literal (``null`` when empty or of an unsupported kind)."""
    d = _field(v, "doubleValue")
    return pl.coalesce(
        _json_string(_field(v, "stringValue")),
        _field(v, "intValue"),
        pl.when(d.is_finite()).then(d.cast(pl.String)),
        _field(v, "boolValue").cast(pl.String),
        _array_json(v),
        pl.lit("null"),
    )


def rest(col: pl.Expr, exclude: Sequence[str]) -> pl.Expr:
    """The KeyValue list ``col`` without ``exclude``, as ``List(Struct{key, value: String})``."""
    element = pl.element()
    key = element.struct.field("key")
    kept = col.list.eval(
        pl.struct(key, text(element.struct.field("value")).alias("value")).filter(
            ~key.is_in(list(exclude))
        )
    )
    empty = pl.lit([], dtype=pl.List(pl.Struct({"key": pl.String, "value": pl.String})))
    return pl.coalesce(kept, empty)


def json_object(col: pl.Expr) -> pl.Expr:
    """The KeyValue list ``col`` as a JSON object string with sorted keys (``{}`` when empty)."""
    element = pl.element()
    key = element.struct.field("key")
    pairs = col.list.eval(
        pl.format("{}:{}", _json_string(key), json_value(element.struct.field("value"))).sort_by(
            key
        )
    )
    return pl.concat_str([pl.lit("{"), pairs.list.join(","), pl.lit("}")]).fill_null("{}")
