"""Fuzzing the OTLP-JSON loader: random, truncated, non-UTF-8 and wrong-shape lines.

Files are built from real lines (written by the real telemetry writer) and damaged ones. Loading
must either succeed or raise the documented :class:`StoreFormatError` naming the file and a line
that really is damaged; with ``errors="skip"`` it must succeed, count what it skipped and keep
every undamaged line. No other exception, and no hang (each example has a deadline).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hardening_fuzz import FUZZ, JSON_VALUES, TIMEOUT, examples, unique
from hypothesis import given, settings
from hypothesis import strategies as st

from sagellm_obs import semconv as sc
from sagellm_obs.frames import load
from sagellm_obs.frames.lines import TORN
from sagellm_obs.protocol.timing import ClockAnchor
from sagellm_obs.store import StoreFormatError, StoreWarning, files_of, iter_jsonl
from sagellm_obs.store.reader import ReadReport
from sagellm_obs.telemetry import AdvancedOptions, RequestRecord, configure

pytestmark = pytest.mark.timeout(TIMEOUT)

# --- real lines ---------------------------------------------------------------------------------


def _record(anchor: ClockAnchor, i: int) -> RequestRecord:
    arrival = anchor.mono_s - 5.0 + i * 0.1
    return RequestRecord(
        request_id=f"seed-{i}",
        trace_id=f"seed-trace-{i}",
        engine_id="fuzz-seed",
        model="tiny-llama",
        operation=sc.OP_TEXT_COMPLETION if i % 2 else sc.OP_CHAT,
        arrival_time=anchor.to_epoch(arrival),
        queued_ts=arrival + 0.001,
        scheduled_ts=arrival + 0.003,
        first_token_ts=arrival + 0.02,
        last_token_ts=arrival + 0.1,
        ttft=0.02,
        e2e=0.101,
        queue=0.002,
        prefill=0.017,
        decode=0.08,
        inference=0.097,
        tpot=0.01,
        prompt_tokens=300 + i,
        output_tokens=9,
        cached_tokens=128 * (i % 2),
        kv_tokens=308 + i,
        kv_bytes=(308 + i) * 1024,
        max_tokens=16,
        temperature=0.5,
        stream=bool(i % 2),
        prompt_token_ids=list(range(300 + i)),
        error_type="timeout" if i == 3 else None,
    )


def _step(i: int, time_ns: int) -> dict[str, Any]:
    return {
        sc.STEP_TIME_UNIX_NANO: time_ns,
        sc.STEP_ENGINE_ID: "fuzz-seed",
        sc.STEP_INDEX: i,
        sc.STEP_RUNNING: 2,
        sc.STEP_WAITING: i % 3,
        sc.STEP_KV_USAGE: 0.25,
        sc.STEP_PREFIX_QUERIES: 100,
        sc.STEP_PREFIX_HITS: 25,
        sc.STEP_PROMPT_TOKENS: 100,
        sc.STEP_CACHED_PROMPT_TOKENS: 25,
        sc.STEP_GENERATION_TOKENS: 1,
        sc.STEP_PREEMPTIONS: 0,
        sc.STEP_FINISHED: 0,
    }


@dataclass(frozen=True)
class Seed:
    """Real lines by file kind (``traces`` holds trace and metric lines: both are OTLP)."""

    lines: dict[str, list[bytes]]
    span_ids: dict[bytes, set[str]]  # trace line -> its span ids


def _write_seed(run: Path) -> Seed:
    tel = configure(
        run_dir=run,
        engine_id="fuzz-seed",
        otlp_endpoint=False,
        make_current=False,
        advanced=AdvancedOptions(simple_processors=True, metric_export_interval=3600.0),
    )
    try:
        anchor = tel.pipeline.anchor
        for i in range(4):
            tel.pipeline.submit_request(_record(anchor, i))
        for i in range(3):
            tel.pipeline.submit_step(_step(i, int(anchor.wall_s * 1e9) + i * 10_000_000))
        assert tel.flush()
    finally:
        tel.shutdown()

    def lines(kind: str) -> list[bytes]:
        return [ln for f in files_of(run, kind) for ln in f.read_bytes().splitlines() if ln.strip()]

    client = [
        json.dumps(
            {
                "request_id": f"seed-{i}",
                "client_start_unix_nano": 1_700_000_000_000_000_000 + i,
                "client_ttft_s": 0.03,
                "client_e2e_s": 0.2,
                "client_itl_ms": [1.0, 2.5],
            }
        ).encode()
        for i in range(2)
    ]
    traces, metrics = lines("traces"), lines("metrics")
    assert traces and metrics and lines("steps")
    span_ids = {
        ln: {
            s["spanId"]
            for rs in json.loads(ln)["resourceSpans"]
            for ss in rs["scopeSpans"]
            for s in ss["spans"]
        }
        for ln in traces
    }
    return Seed(
        {"traces": traces + metrics, "steps": lines("steps"), "requests-client": client}, span_ids
    )


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    run = tmp_path_factory.mktemp("seed") / "run"
    out = _write_seed(run)
    load(run, cache=False)  # warm up (imports, pyarrow) outside the examples' deadline
    return out


# --- damaged lines --------------------------------------------------------------------------------


def _nodes(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a decoded JSON value."""
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(_nodes(v, (*path, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_nodes(v, (*path, i)))
    return out


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        obj = obj[part]
    return obj


def _replace(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        return {**obj, head: _replace(obj[head], rest, value)}
    copy = list(obj)
    copy[head] = _replace(obj[head], rest, value)
    return copy


def _dumps(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True).encode(
        "utf-8", "surrogatepass"
    )


@st.composite
def _line(draw: st.DrawFn, pool: list[bytes]) -> tuple[str, bytes]:
    """``(label, bytes)``; the label is ``"good"`` for an untouched real line."""
    choice = draw(
        st.sampled_from(
            ["good", "good", "cut", "mutate", "mutate", "retype", "json", "bytes", "bad_utf8"]
        )
    )
    real = draw(st.sampled_from(pool))
    if choice == "good":
        return "good", real
    if choice == "cut":
        return "cut", real[: draw(st.integers(1, len(real) - 1))]
    if choice == "mutate":
        obj = json.loads(real)
        path = draw(st.sampled_from(_nodes(obj)))
        new = draw(JSON_VALUES | st.just(None) | st.just([]) | st.just({}))
        return "mutate", _dumps(_replace(obj, path, new), draw(st.booleans()))
    if choice == "retype":  # every number (or every string) of the line becomes one value
        kind = draw(st.sampled_from([(int, float), (str,)]))
        new = draw(JSON_VALUES)
        obj = json.loads(real)
        for path in _nodes(obj):
            if path and isinstance(_get(obj, path), kind) and not isinstance(_get(obj, path), bool):
                obj = _replace(obj, path, new)
        return "retype", _dumps(obj, draw(st.booleans()))
    if choice == "json":
        return "json", _dumps(draw(JSON_VALUES), draw(st.booleans()))
    if choice == "bytes":
        return "bytes", draw(st.binary(max_size=40)).replace(b"\n", b" ")
    at = draw(st.integers(0, len(real)))
    junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80", b"\xf4\x90"]))
    return "bad_utf8", real[:at] + junk + real[at:]


_KINDS = {"traces": "traces-00001.jsonl", "steps": "steps-00001.jsonl",
          "requests-client": "requests-client-00001.jsonl"}  # fmt: skip


@st.composite
def _file(draw: st.DrawFn, seed: Seed) -> tuple[str, list[tuple[str, bytes]], bool]:
    kind = draw(st.sampled_from(sorted(_KINDS)))
    pool = seed.lines[kind]
    body = draw(
        st.lists(
            _line(pool) | st.sampled_from([("blank", b""), ("blank", b"  \t")]),
            min_size=1,
            max_size=7,
        )
    )
    return kind, body, draw(st.booleans())


def _write(directory: Path, name: str, body: list[tuple[str, bytes]], newline: bool) -> Path:
    path = directory / name
    data = b"\n".join(line for _, line in body) + (b"\n" if newline else b"")
    path.write_bytes(data)
    return path


def _torn_line(body: list[tuple[str, bytes]], newline: bool) -> int | None:
    """The line number a reader treats as torn: the last one, when no newline ends it."""
    if newline or not body:
        return None
    last = body[-1][1]
    try:
        complete = isinstance(json.loads(last), dict)
    except ValueError:
        complete = False
    return None if complete or not last.strip() else len(body)


def _outcome(fn: Callable[[], Any]) -> Any:
    """``fn()``, or the :class:`StoreFormatError` it raised (any other exception propagates)."""
    try:
        return fn()
    except StoreFormatError as exc:
        return exc


def _load(path: Path, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        return load(path, **kw)


def _check_skipped(report: ReadReport, path: Path, good: set[int], torn: int | None) -> None:
    for file, line, reason in report.skipped:
        assert file == str(path), report.skipped
        assert line not in good, f"an undamaged line was skipped: {line}: {reason}"
        assert (reason == TORN) == (line == torn), (line, reason, torn)


@settings(FUZZ, max_examples=examples(250))
@given(data=st.data())
def test_loader_raises_only_store_format_errors(seed: Seed, tmp_path: Path, data: Any) -> None:
    kind, body, newline = data.draw(_file(seed))
    directory = tmp_path / unique("ex")
    directory.mkdir()
    path = _write(directory, _KINDS[kind], body, newline)
    good = {i + 1 for i, (label, _) in enumerate(body) if label == "good"}
    torn = _torn_line(body, newline)
    good.discard(torn or 0)

    out = _outcome(lambda: _load(directory, cache=False))
    if isinstance(out, StoreFormatError):
        assert out.path == path
        assert 1 <= out.line <= len(body) and out.line not in good, (out, good)
        assert str(out).startswith(f"{path}:{out.line}: ")
    else:
        _check_skipped(out.report, path, good, torn)

    skipped = _load(directory, cache=True, errors="skip")
    _check_skipped(skipped.report, path, good, torn)
    assert len(skipped.report.skipped) <= len(body) - len(good)
    if kind == "traces":
        expected = set().union(*(seed.span_ids.get(body[n - 1][1], set()) for n in good))
        assert expected <= set(skipped.spans["span_id"].to_list())
    elif kind == "steps":
        assert skipped.steps.height >= len(good)
    # The Parquet cache answers the same, whatever the lines held.
    cached = _load(directory, cache=True, errors="skip")
    assert cached.from_cache
    for name, df in skipped.frames().items():
        assert cached.frames()[name].equals(df, null_equal=True), name


@settings(FUZZ, max_examples=examples(200))
@given(data=st.data())
def test_store_reader_raises_only_store_format_errors(
    seed: Seed, tmp_path: Path, data: Any
) -> None:
    _, body, newline = data.draw(_file(seed))
    path = _write(tmp_path, unique("x") + ".jsonl", body, newline)
    objects = {i + 1 for i, (_, line) in enumerate(body) if _is_object(line)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        out = _outcome(lambda: [n for n, _ in iter_jsonl(path)])
        if isinstance(out, StoreFormatError):
            assert out.path == path and out.line not in objects
        else:
            assert out == sorted(objects)
        report = ReadReport()
        got = [n for n, _ in iter_jsonl(path, errors="skip", report=report)]
    assert got == sorted(objects)
    assert {n for _, n, _ in report.skipped} | set(got) | _blank(body) == set(
        range(1, len(body) + 1)
    )


def _is_object(line: bytes) -> bool:
    """Whether the store's reader reads ``line`` as an object (it strips whitespace first)."""
    try:
        return isinstance(json.loads(line.strip()), dict)
    except ValueError:
        return False


def _blank(body: list[tuple[str, bytes]]) -> set[int]:
    return {i + 1 for i, (_, line) in enumerate(body) if not line.strip()}


# --- a few fixed adversarial files, on top of the random ones ---------------------------------


def _big_double_line() -> bytes:
    span = {
        "traceId": "0102030405060708090a0b0c0d0e0f10",
        "spanId": "0102030405060708",
        "name": "x",
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000100000000",
        "attributes": [{"key": "k", "value": {"doubleValue": 10**400}}],
    }
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


FIXED: dict[str, Callable[[], bytes]] = {
    # An integer beyond the double range where a double is expected, in a file the fast decoder
    # hands to the line-by-line reader (the blank line).
    "huge-double": lambda: _big_double_line() + b"\n\n",
    "huge-kv-usage": lambda: b'{"time_unix_nano": 5, "kv_cache_usage": ' + b"9" * 400 + b"}\n\n",
    "deep-nesting": lambda: b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    "long-int-string": lambda: b'{"time_unix_nano": "' + b"7" * 5000 + b'"}\n',
    "nul-bytes": lambda: b"\x00" * 64 + b"\n",
    "bom": lambda: b"\xef\xbb\xbf" + _big_double_line() + b"\n",
}


@pytest.mark.parametrize("name", sorted(FIXED))
def test_fixed_adversarial_files(tmp_path: Path, name: str) -> None:
    kind = "steps" if "kv-usage" in name or "int-string" in name else "traces"
    path = tmp_path / _KINDS[kind]
    path.write_bytes(FIXED[name]())
    raised = _outcome(lambda: _load(tmp_path, cache=False))
    if isinstance(raised, StoreFormatError):
        assert raised.path == path and raised.line >= 1
    out = _load(tmp_path, cache=False, errors="skip")
    assert all(file == str(path) for file, _, _ in out.report.skipped)
    assert math.isfinite(len(out.report.skipped))
