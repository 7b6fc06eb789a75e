"""The tolerant JSONL reader: torn last lines, malformed lines named by file:line, skip mode."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from sagellm_obs.store import (
    ReadReport,
    RunStore,
    StoreFormatError,
    StoreWarning,
    files_of,
    iter_jsonl,
)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _load(path: Path, **kw: object) -> tuple[list[tuple[int, dict[str, object]]], list[str]]:
    """Read everything, returning the records and the texts of the StoreWarnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = list(iter_jsonl(path, **kw))  # type: ignore[arg-type]
    texts = [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    return records, texts


def test_empty_file(tmp_path: Path) -> None:
    assert _load(_write(tmp_path / "t.jsonl", b"")) == ([], [])


def test_only_blank_lines(tmp_path: Path) -> None:
    assert _load(_write(tmp_path / "t.jsonl", b"\n\n  \n\t\n")) == ([], [])


def test_blank_lines_are_ignored_but_counted_in_line_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", b'\n{"a":1}\n\n   \n{"b":2}\r\n\n')
    records, warned = _load(path)
    assert records == [(2, {"a": 1}), (5, {"b": 2})]
    assert warned == []


def test_last_line_without_newline_but_complete_is_kept(tmp_path: Path) -> None:
    records, warned = _load(_write(tmp_path / "t.jsonl", b'{"a":1}\n{"b":2}'))
    assert records == [(1, {"a": 1}), (2, {"b": 2})]
    assert warned == []


def test_torn_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", b'{"a":1}\n{"b":2}\n{"c":[1,2,')
    report = ReadReport()
    records, warned = _load(path, report=report)
    assert records == [(1, {"a": 1}), (2, {"b": 2})]
    assert len(warned) == 1
    assert f"{path}:3" in warned[0]
    assert "torn" in warned[0]
    assert report.skipped == [(str(path), 3, "torn last line (incomplete write)")]


def test_malformed_middle_line_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "traces-00007.jsonl", b'{"a":1}\n\n{"b":2}\n{"c": oops}\n{"d":4}\n')
    with pytest.raises(StoreFormatError) as info:
        list(iter_jsonl(path))
    err = info.value
    assert err.line == 4
    assert err.path == path
    assert str(err).startswith(f"{path}:4: ")
    assert "not valid JSON" in str(err)
    assert isinstance(err, ValueError)


def test_complete_malformed_last_line_is_an_error_not_a_torn_line(tmp_path: Path) -> None:
    # It ends with a newline: the write finished, so the content itself is bad.
    path = _write(tmp_path / "t.jsonl", b'{"a":1}\n{"b":\n')
    with pytest.raises(StoreFormatError, match=r":2: "):
        list(iter_jsonl(path))


def test_skip_mode_counts_bad_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.jsonl",
        b'{"a":1}\nnot json\n[1,2,3]\n{"b":2}\n"just a string"\n{"c":3}\n{"torn',
    )
    report = ReadReport()
    records, warned = _load(path, errors="skip", report=report)
    assert records == [(1, {"a": 1}), (4, {"b": 2}), (6, {"c": 3})]
    assert [(line, "torn" in why) for _, line, why in report.skipped] == [
        (2, False),
        (3, False),
        (5, False),
        (7, True),
    ]
    assert all(p == str(path) for p, _, _ in report.skipped)
    assert "expected a JSON object, got list" in report.skipped[1][2]
    assert len(warned) == 1  # the torn line; bad lines are summarised by report.warn()
    with pytest.warns(StoreWarning, match=r"skipped 4 bad record\(s\); first at .*:2:"):
        report.warn()


def test_report_without_skips_does_not_warn(tmp_path: Path) -> None:
    report = ReadReport()
    list(iter_jsonl(_write(tmp_path / "t.jsonl", b'{"a":1}\n'), report=report))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report.warn()
    assert report.skipped == []


@pytest.mark.parametrize(
    ("line", "kind"),
    [(b"[1, 2]", "list"), (b"42", "int"), (b'"s"', "str"), (b"null", "NoneType")],
)
def test_non_object_json_line_is_an_error(tmp_path: Path, line: bytes, kind: str) -> None:
    path = _write(tmp_path / "t.jsonl", b'{"a":1}\n' + line + b'\n{"b":2}\n')
    with pytest.raises(StoreFormatError) as info:
        list(iter_jsonl(path))
    assert info.value.line == 2
    assert f"expected a JSON object, got {kind}" in str(info.value)


def test_invalid_utf8_line_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", b'{"a":1}\n{"b":"\xff\xfe"}\n{"c":3}\n')
    with pytest.raises(StoreFormatError) as info:
        list(iter_jsonl(path))
    assert info.value.line == 2
    assert f"{path}:2:" in str(info.value)
    report = ReadReport()
    records, _ = _load(path, errors="skip", report=report)
    assert records == [(1, {"a": 1}), (3, {"c": 3})]
    assert [line for _, line, _ in report.skipped] == [2]


def test_store_file_truncated_at_every_offset_of_its_last_line(tmp_path: Path) -> None:
    """What a crash mid-write leaves: the complete lines always load, the torn tail never raises."""
    run = tmp_path / "run"
    store = RunStore(run)
    complete = [{"i": 0, "name": "first"}, {"i": 1, "nested": {"x": [1, 2.5, None, True]}}]
    last = {"i": 2, "text": "multi-byte: é ✓ 𝄞", "arr": [{"k": "v"}], "n": -1.5e-3}
    store.write("traces", complete)
    store.write("traces", [last])
    store.close()
    (path,) = files_of(run, "traces")
    data = path.read_bytes()
    cut = data.rindex(b"\n", 0, len(data) - 1) + 1  # start of the last line
    last_line = data[cut:]
    assert json.loads(last_line) == last
    expected = list(enumerate(complete, start=1))
    for k in range(len(last_line) + 1):
        torn = tmp_path / "torn.jsonl"
        torn.write_bytes(data[:cut] + last_line[:k])
        records, warned = _load(torn)
        body = last_line[:k].rstrip(b"\n")
        if k >= len(last_line) - 1:  # the whole object, with or without its newline
            assert records == [*expected, (3, last)], k
            assert warned == [], k
        elif k == 0:
            assert records == expected
            assert warned == []
        else:
            assert records == expected, (k, body)
            assert len(warned) == 1, (k, body)
            assert f"{torn}:3:" in warned[0]
        # skip mode gives the same records and never raises either
        skipped, _ = _load(torn, errors="skip")
        assert skipped == records, k


def test_files_of_lists_kind_files_in_order_or_the_file_itself(tmp_path: Path) -> None:
    for name in ("traces-00002.jsonl", "traces-00001.jsonl", "metrics-00001.jsonl", "x.txt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in files_of(tmp_path, "traces")] == [
        "traces-00001.jsonl",
        "traces-00002.jsonl",
    ]
    assert files_of(tmp_path / "x.txt", "traces") == [tmp_path / "x.txt"]
    assert files_of(tmp_path / "missing", "traces") == []
