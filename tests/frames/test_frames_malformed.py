"""Bad input: clear errors naming file and line, or skipped and counted; never a crash."""

from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from frames_otlp import T0, WrittenRun, span, step_record, traces_line, write_lines
from polars.testing import assert_frame_equal

from sagellm_obs import semconv as sc
from sagellm_obs.frames import SCHEMAS, attribute, load
from sagellm_obs.frames.wire import OTLP_LINE
from sagellm_obs.store import StoreFormatError, StoreWarning

lines_mod = importlib.import_module("sagellm_obs.frames.lines")


def _line(i: int, **attrs: Any) -> dict[str, Any]:
    s = span(f"{i + 1:032x}", f"{i + 1:016x}", f"s{i}", start_ns=T0 + i, attributes=attrs)
    return traces_line([s])


def _good(n: int) -> list[str]:
    return [json.dumps(_line(i)) for i in range(n)]


def _load_quietly(path: Path, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning expected
        return load(path, cache=False, **kwargs)


def test_empty_and_blank_files(tmp_path: Path) -> None:
    (tmp_path / "traces-00001.jsonl").write_bytes(b"")
    (tmp_path / "metrics-00001.jsonl").write_bytes(b"\n\n  \n")
    (tmp_path / "steps-00001.jsonl").write_bytes(b"")
    out = _load_quietly(tmp_path)
    for name, df in out.frames().items():
        assert df.is_empty() and df.schema == SCHEMAS[name]


def test_torn_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "traces-00001.jsonl"
    good = _good(3)
    path.write_text("\n".join(good) + "\n" + good[0][: len(good[0]) // 2])
    for errors in ("raise", "skip"):
        with pytest.warns(StoreWarning, match=r"traces-00001.jsonl:4: torn last line"):
            out = load(tmp_path, cache=False, errors=errors)  # type: ignore[arg-type]
        assert out.spans["name"].to_list() == ["s0", "s1", "s2"]
        assert out.report.skipped == [(str(path), 4, "torn last line (incomplete write)")]


def test_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text("\n".join(_good(2)))
    assert _load_quietly(tmp_path).spans.height == 2


def test_non_json_middle_line_names_file_and_line(tmp_path: Path) -> None:
    good = _good(4)
    path = write_lines(tmp_path / "traces-00001.jsonl", [good[0], "{oops", good[1], good[2]])
    with pytest.raises(StoreFormatError) as info:
        load(tmp_path, cache=False)
    assert info.value.path == path
    assert info.value.line == 2
    assert f"{path}:2:" in str(info.value)
    assert "not valid JSON" in str(info.value)


def test_skip_mode_counts_bad_lines_and_warns_once(tmp_path: Path) -> None:
    good = _good(4)
    write_lines(
        tmp_path / "traces-00001.jsonl",
        [good[0], "{oops", good[1], "[1, 2]", '{"hello": "world"}', good[2], "", good[3]],
    )
    with pytest.warns(StoreWarning) as record:
        out = load(tmp_path, cache=False, errors="skip")
    assert len(record) == 1
    assert "skipped 3 bad record(s)" in str(record[0].message)
    assert [line for _, line, _ in out.report.skipped] == [2, 4, 5]
    spans = out.spans.sort("name")
    assert spans["name"].to_list() == ["s0", "s1", "s2", "s3"]
    assert spans["source_line"].to_list() == [1, 3, 6, 8]  # blank line 7 still counts


def test_many_files_keep_file_order_in_rows_reports_and_errors(tmp_path: Path) -> None:
    """Files are decoded two at a time; what comes out must not depend on which finishes first."""
    good = _good(12)
    bad_span = _line(99)
    del bad_span["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"]
    paths = [
        write_lines(tmp_path / f"traces-{k + 1:05d}.jsonl", [good[2 * k], good[2 * k + 1]])
        for k in range(6)
    ]
    # A big file first (slowest to finish), then small files with bad lines of both kinds.
    write_lines(paths[0], [*_good(2), *[json.dumps(_line(i)) for i in range(200, 2200)]])
    write_lines(paths[2], [good[4], json.dumps(bad_span), good[5]])
    write_lines(paths[4], [good[8], "{oops", good[9]])
    with pytest.raises(StoreFormatError) as info:
        load(tmp_path, cache=False)
    assert (info.value.path, info.value.line) == (paths[2], 2)
    with pytest.warns(StoreWarning, match=r"skipped 2 bad record\(s\); first at .*traces-00003"):
        out = load(tmp_path, cache=False, errors="skip")
    assert [(Path(p).name, line) for p, line, _ in out.report.skipped] == [
        ("traces-00003.jsonl", 2),
        ("traces-00005.jsonl", 2),
    ]
    files = out.spans["source_file"].to_list()
    assert files == sorted(files) and out.spans.height == 2002 + 10
    assert out.spans["name"].to_list()[:2] == ["s0", "s1"]


def test_json_object_that_is_not_otlp(tmp_path: Path) -> None:
    good = _good(2)
    write_lines(tmp_path / "traces-00001.jsonl", [good[0], good[1], '{"time_unix_nano": 5}'])
    with pytest.raises(StoreFormatError, match=r"traces-00001.jsonl:3: not an OTLP/JSON") as info:
        load(tmp_path, cache=False)
    assert "time_unix_nano" in str(info.value)
    with pytest.warns(StoreWarning, match="skipped 1"):
        out = load(tmp_path, cache=False, errors="skip")
    assert out.spans.height == 2


def test_empty_object_line_is_an_empty_request(tmp_path: Path) -> None:
    write_lines(tmp_path / "t.jsonl", [*_good(1), "{}"])
    assert _load_quietly(tmp_path).spans.height == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"resourceSpans": {"a": 1}}', "resourceSpans: expected an array"),
        (
            '{"resourceSpans": [{"scopeSpans": [{"spans": [7]}]}]}',
            r"spans\[0\]: expected an object",
        ),
        (
            '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab", "spanId": "cd", '
            '"startTimeUnixNano": "1", "kind": "sideways"}]}]}]}',
            "kind: expected an integer",
        ),
        (
            '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab", "spanId": "cd", '
            '"startTimeUnixNano": "1", '
            '"attributes": [{"key": "k", "value": {"boolValue": "yes"}}]}]}]}]}',
            "boolValue: expected true or false",
        ),
    ],
)
def test_wrong_nested_shapes_name_the_json_path(tmp_path: Path, line: str, message: str) -> None:
    write_lines(tmp_path / "traces-00001.jsonl", [*_good(2), line])
    with pytest.raises(StoreFormatError, match=r"traces-00001.jsonl:3: .*" + message):
        load(tmp_path, cache=False)
    with pytest.warns(StoreWarning, match="skipped 1"):
        assert load(tmp_path, cache=False, errors="skip").spans.height == 2


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("spanId", "span without spanId"),
        ("traceId", "span without traceId"),
        ("startTimeUnixNano", "span without a valid startTimeUnixNano"),
    ],
)
def test_span_missing_a_required_field(tmp_path: Path, drop: str, message: str) -> None:
    bad = _line(9)
    del bad["resourceSpans"][0]["scopeSpans"][0]["spans"][0][drop]
    write_lines(tmp_path / "traces-00001.jsonl", [*_good(1), bad, *_good(2)[1:]])
    with pytest.raises(StoreFormatError, match=f"traces-00001.jsonl:2: {message}"):
        load(tmp_path, cache=False)
    with pytest.warns(StoreWarning, match="skipped 1"):
        out = load(tmp_path, cache=False, errors="skip")
    assert out.spans["name"].to_list() == ["s0", "s1"]


def test_unknown_attributes_and_fields_are_kept_or_ignored(tmp_path: Path) -> None:
    line = _line(
        0,
        **{
            "my.string": 'quote " and \\ backslash',
            "my.int": 12345678901234,
            "my.double": 1.5,
            "my.bool": True,
            "my.list": ["a", "b"],
            "my.ints": [1, 2],
            sc.GEN_AI_USAGE_INPUT_TOKENS: 7,
        },
    )
    s = line["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    s["links"] = [{"traceId": "f" * 32, "spanId": "e" * 16}]  # not loaded, not an error
    s["droppedAttributesCount"] = 3
    s["attributes"].append({"key": "my.kvlist", "value": {"kvlistValue": {"values": []}}})
    line["resourceSpans"][0]["unknownTopLevelField"] = {"x": 1}
    write_lines(tmp_path / "t.jsonl", [line])
    spans = _load_quietly(tmp_path).spans
    attrs = {a["key"]: a["value"] for a in spans["attributes"].to_list()[0]}
    assert attrs == {
        "my.string": 'quote " and \\ backslash',
        "my.int": "12345678901234",
        "my.double": "1.5",
        "my.bool": "true",
        "my.list": '["a","b"]',
        "my.ints": '["1","2"]',
        "my.kvlist": None,  # kvlist values are not decoded
    }
    assert spans["input_tokens"].to_list() == [7]
    typed = spans.select(attribute("my.int", pl.Int64), attribute("my.bool", pl.Boolean))
    assert typed.row(0) == (12345678901234, True)


def test_blank_lines_keep_true_line_numbers(tmp_path: Path) -> None:
    good = _good(3)
    write_lines(tmp_path / "t.jsonl", ["", good[0], "", "", good[1], "   ", good[2]])
    spans = _load_quietly(tmp_path).spans.sort("name")
    assert spans["source_line"].to_list() == [2, 5, 7]


def test_invalid_utf8_and_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "traces-00001.jsonl"
    path.write_bytes(
        _good(1)[0].encode() + b"\n\xff\xfe\x00garbage\n" + _good(2)[1].encode() + b"\n"
    )
    with pytest.raises(StoreFormatError, match=r"traces-00001\.jsonl:2"):
        load(tmp_path, cache=False)
    with pytest.warns(StoreWarning):
        assert load(tmp_path, cache=False, errors="skip").spans.height == 2


def test_bad_step_lines(tmp_path: Path) -> None:
    ok = json.dumps(step_record(1, T0))
    write_lines(tmp_path / "steps-00001.jsonl", [ok, '{"engine_id": "e", "step": 2}', ok])
    with pytest.raises(
        StoreFormatError, match=r"steps-00001.jsonl:2: not a steps record: missing time_unix_nano"
    ):
        load(tmp_path, cache=False)
    write_lines(tmp_path / "steps-00001.jsonl", [ok, '{"time_unix_nano": "soon"}'])
    with pytest.raises(
        StoreFormatError, match=r"steps-00001.jsonl:2: time_unix_nano: expected an integer"
    ):
        load(tmp_path, cache=False)
    variant = dict(step_record(1, T0), kv_cache_usage=0, running=3.0, extra_key="ignored")
    write_lines(tmp_path / "steps-00001.jsonl", [variant])
    steps = _load_quietly(tmp_path).steps
    assert steps["running"].to_list() == [3]
    assert steps["kv_cache_usage"].to_list() == [0.0]


def test_bad_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{nope")
    with pytest.raises(StoreFormatError, match=r"manifest\.json"):
        load(tmp_path, cache=False)


def test_doubles_written_as_special_strings(tmp_path: Path) -> None:
    line = _line(0, x=1.0)
    value = line["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"][0]["value"]
    value["doubleValue"] = "NaN"
    write_lines(tmp_path / "t.jsonl", [line, _line(1, **{sc.GEN_AI_LATENCY_E2E: 2.5})])
    spans = _load_quietly(tmp_path).spans.sort("name")
    assert spans["attributes"].to_list()[0] == [{"key": "x", "value": None}]
    assert spans["e2e_s"].to_list() == [None, 2.5]


def test_polars_decoder_matches_pyarrow(
    frames: Any, written: WrittenRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"".join(
        f.read_bytes() for f in sorted(written.path.glob("*-*.jsonl")) if "steps" not in f.name
    )
    data = lines_mod.wire.replace_enum_names(data)
    assert_frame_equal(
        lines_mod.decode(data, OTLP_LINE, engine="polars"),
        lines_mod.decode(data, OTLP_LINE, engine="pyarrow"),
    )
    monkeypatch.setattr(lines_mod, "_pyarrow", lambda: None)
    without = load(written.path, cache=False)
    for name in SCHEMAS:
        assert_frame_equal(without.frames()[name], frames.frames()[name])
