"""Regenerate the tables of ``docs/benchmarks.md`` from ``benchmarks/results/*.json``.

Each table sits between ``<!-- BEGIN bench:NAME -->`` and ``<!-- END bench:NAME -->``; only what
is between the markers is replaced, so the prose around it stays. A benchmark without a result
file keeps whatever its block holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from benchmarks._common import f, read_result, table

Renderer = Callable[[dict[str, Any]], str]
Headline = Callable[[dict[str, Any]], list[list[str]]]


def begin(name: str) -> str:
    return f"<!-- BEGIN bench:{name} -->"


def end(name: str) -> str:
    return f"<!-- END bench:{name} -->"


def skeleton(names: list[str], titles: Mapping[str, str]) -> str:
    """A minimal document holding one block per benchmark (used when the doc does not exist)."""
    parts = ["# Benchmarks", "", begin("summary"), end("summary"), ""]
    parts += ["## Machine", "", begin("machine"), end("machine"), ""]
    for name in names:
        parts += [f"## {titles.get(name, name)}", "", begin(name), end(name), ""]
    return "\n".join(parts)


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block of ``name`` replaced by ``body`` (appended when missing)."""
    pattern = re.compile(re.escape(begin(name)) + r".*?" + re.escape(end(name)), re.DOTALL)
    block = f"{begin(name)}\n{body.strip()}\n{end(name)}"
    if pattern.search(text):
        return pattern.sub(lambda _m: block, text, count=1)
    return text.rstrip("\n") + f"\n\n{block}\n"


def machine_block(docs: list[dict[str, Any]]) -> str:
    """The machine and versions the results were measured on (from the newest result)."""
    newest = max(docs, key=lambda d: d.get("finished_at", ""))
    m, v = newest["machine"], newest["versions"]
    rows = [
        ["CPU", f"{m['cpu_model']}, {m['nproc']} cores (`nproc`)"],
        ["memory", f"{f(m['memory_gib'], 1)} GiB"],
        ["OS", m["os"]],
        ["Python", m["python"]],
        ["packages", ", ".join(f"{k} {val}" for k, val in v.items())],
        ["commit", f"`{newest.get('git', 'unknown')}`"],
        [
            "results",
            ", ".join(f"{d['benchmark']} ({d['finished_at']})" for d in docs),
        ],
    ]
    return table(["", ""], rows)


def summary_block(rows: list[list[str]]) -> str:
    """The targets and what was measured, one row per target."""
    return table(["benchmark", "measure", "target", "measured", "met"], rows)


def update(
    doc_path: Path,
    results_dir: Path,
    renderers: Mapping[str, Renderer],
    titles: Mapping[str, str],
    headlines: Mapping[str, Headline] | None = None,
) -> list[str]:
    """Rewrite the blocks of ``doc_path`` whose results exist; returns the names updated."""
    text = doc_path.read_text() if doc_path.is_file() else skeleton(list(renderers), titles)
    docs: list[dict[str, Any]] = []
    updated: list[str] = []
    summary: list[list[str]] = []
    for name, render in renderers.items():
        doc = read_result(name, results_dir)
        if doc is None:
            continue
        docs.append(doc)
        text = replace_block(text, name, render(doc))
        updated.append(name)
        headline = (headlines or {}).get(name)
        if headline is not None:
            summary += [[f"[{name}](#{name})", *row] for row in headline(doc)]
    if docs:
        text = replace_block(text, "machine", machine_block(docs))
    if summary:
        text = replace_block(text, "summary", summary_block(summary))
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    doc_path.write_text(text)
    return updated
