"""Regenerate the tables of ``docs/benchmarks.md`` from ``benchmarks/results/*.json``.

Each table sits between ``<!-- BEGIN bench:NAME -->`` and ``<!-- END bench:NAME -->``; only what
is between the markers is replaced, so the prose around it stays. A benchmark without a result
file keeps whatever its block holds, its rows of the summary and its entry in the machine table's
list of results (result files are not committed: rerunning one benchmark on a fresh clone must
not erase the others' figures).
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


def block_body(text: str, name: str) -> str:
    """What the block of ``name`` holds in ``text`` ("" when it has none)."""
    pattern = re.compile(re.escape(begin(name)) + r"\n?(.*?)" + re.escape(end(name)), re.DOTALL)
    m = pattern.search(text)
    return m.group(1) if m else ""


def kept_summary_rows(text: str, skip: set[str]) -> dict[str, list[str]]:
    """Summary rows of ``text`` per benchmark, for benchmarks not in ``skip``."""
    kept: dict[str, list[str]] = {}
    for line in block_body(text, "summary").splitlines():
        m = re.match(r"\| \[([\w-]+)\]\(#", line)
        if m and m.group(1) not in skip:
            kept.setdefault(m.group(1), []).append(line)
    return kept


def kept_results(text: str, skip: set[str]) -> dict[str, str]:
    """The machine table's ``name (finished_at)`` entries, for benchmarks not in ``skip``."""
    for line in block_body(text, "machine").splitlines():
        if line.startswith("| results |"):
            cell = line.removeprefix("| results |").rstrip(" |")
            found = re.findall(r"([\w-]+) \(([^)]*)\)", cell)
            return {n: f"{n} ({when})" for n, when in found if n not in skip}
    return {}


def machine_block(docs: list[dict[str, Any]], kept: Mapping[str, str] | None = None) -> str:
    """The machine and versions the results were measured on (from the newest result)."""
    newest = max(docs, key=lambda d: d.get("finished_at", ""))
    m, v = newest["machine"], newest["versions"]
    rows = [
        ["CPU", f"{m['cpu_model']}, {m['nproc']} cores (`nproc`)"],
        ["memory", f"{f(m['memory_gib'], 1)} GiB"],
        ["OS", m["os"]],
        ["Python", m["python"]],
        ["packages", ", ".join(f"{k} {val}" for k, val in v.items())],
        ["commit (newest result)", f"`{newest.get('git', 'unknown')}`"],
        [
            "results",
            ", ".join(
                [*(kept or {}).values(), *(f"{d['benchmark']} ({d['finished_at']})" for d in docs)]
            ),
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
    fresh: dict[str, list[str]] = {}
    for name, render in renderers.items():
        doc = read_result(name, results_dir)
        if doc is None:
            continue
        docs.append(doc)
        text = replace_block(text, name, render(doc))
        updated.append(name)
        headline = (headlines or {}).get(name)
        if headline is not None:
            rows = [[f"[{name}](#{name})", *row] for row in headline(doc)]
            fresh[name] = summary_block(rows).splitlines()[2:]
    if docs:
        kept = kept_results(text, set(updated))
        text = replace_block(text, "machine", machine_block(docs, kept))
    if fresh:
        kept_rows = kept_summary_rows(text, set(updated))
        # Benchmarks in the order they run; rows of unknown names last.
        order = [*renderers, *(n for n in kept_rows if n not in renderers)]
        lines = [line for n in order for line in fresh.get(n, kept_rows.get(n, []))]
        head = summary_block([]).splitlines()[:2]
        text = replace_block(text, "summary", "\n".join([*head, *lines]))
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    doc_path.write_text(text)
    return updated
