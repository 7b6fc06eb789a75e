"""Attribute lookups by the request spans' shared key order against searching every list.

``frames.spans`` reads a key of the prefix every span shares at its place; the same spans with
their attribute lists rotated (no shared prefix: every key searched) must give the same rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from sagellm_obs import semconv as sc
from sagellm_obs.frames import files
from sagellm_obs.store import files_of
from tests.frames.frames_otlp import WrittenRun


def _rows(path: Path) -> pl.DataFrame:
    built, report = files.build_file(path, files.OTLP, path.parent, run_id=None, errors="raise")
    assert not report.skipped
    spans = built["spans"].drop("source_file")
    # The order of the other attributes follows the lists; the rows must not depend on it.
    return spans.with_columns(pl.col("attributes").list.sort()).sort("span_id")


def _rewrite(src: Path, dst: Path, change: Any) -> Path:
    lines = []
    for text in src.read_text().splitlines():
        obj = json.loads(text)
        for rs in obj.get("resourceSpans", []):
            for ss in rs["scopeSpans"]:
                for k, span in enumerate(ss["spans"]):
                    change(k, span)
        lines.append(json.dumps(obj))
    dst.write_text("\n".join(lines) + "\n")
    return dst


def test_spans_sharing_a_key_order_read_like_spans_that_do_not(
    written: WrittenRun, tmp_path: Path
) -> None:
    (traces,) = files_of(written.path, "traces")

    def rotate(k: int, span: dict[str, Any]) -> None:
        a = span.get("attributes", [])
        if a:
            span["attributes"] = a[k % len(a) :] + a[: k % len(a)]

    def duplicate(k: int, span: dict[str, Any]) -> None:
        # Keys again after the shared prefix: the first occurrence still wins.
        if span.get("attributes"):
            span["attributes"] += [
                {"key": sc.GEN_AI_REQUEST_MODEL, "value": {"stringValue": "later"}},
                {"key": sc.SAGELLM_REQUEST_ID, "value": {"intValue": "7"}},
                {"key": sc.ERROR_TYPE, "value": {"stringValue": f"E{k}"}},
                {"key": sc.ERROR_TYPE, "value": {"stringValue": "second"}},
            ]

    def swap(k: int, span: dict[str, Any]) -> None:
        a = span.get("attributes", [])
        if len(a) > 1 and k % 3:
            a[0], a[1] = a[1], a[0]

    shared = _rows(traces)
    assert shared.filter(pl.col("kind") == "SERVER").height == len(written.records)
    rotated = _rows(_rewrite(traces, tmp_path / "rotated.jsonl", rotate))
    assert rotated.equals(shared, null_equal=True)

    # Spans that share only the start of their lists (optional keys differ): the shared part is
    # read at its places, the rest searched.
    def trim(k: int, span: dict[str, Any]) -> None:
        if span.get("attributes") and k % 2:
            del span["attributes"][-5:]

    trimmed = _rows(_rewrite(traces, tmp_path / "trimmed.jsonl", trim))
    trimmed_path = tmp_path / "trimmed.jsonl"
    rotated_trim = _rows(_rewrite(trimmed_path, tmp_path / "trimmed-rotated.jsonl", rotate))
    assert trimmed.equals(rotated_trim, null_equal=True)
    assert not trimmed.equals(shared, null_equal=True)  # the trim did drop values

    dup = _rows(_rewrite(traces, tmp_path / "dup.jsonl", duplicate))
    # Some spans with their first two keys swapped (no shared prefix; no first occurrence moves).
    dup_searched = _rows(_rewrite(tmp_path / "dup.jsonl", tmp_path / "dup-swapped.jsonl", swap))
    assert dup.equals(dup_searched, null_equal=True)
    servers = dup.filter(pl.col("kind") == "SERVER")
    assert (
        servers["model"].to_list() == shared.filter(pl.col("kind") == "SERVER")["model"].to_list()
    )
    before = shared.filter(pl.col("kind") == "SERVER")["error_type"]
    for was, now in zip(before.to_list(), servers["error_type"].to_list(), strict=True):
        assert now == was if was is not None else now.startswith("E"), (was, now)
