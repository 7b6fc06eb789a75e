"""``python -m benchmarks [NAME ...] [--quick] [--big] [--set KEY=VALUE] [--docs]``.

Without a name every benchmark runs at its documented default size, each in its own process
(one vLLM engine or one million-row frame does not leak into the next), then the tables of
``docs/benchmarks.md`` are regenerated from the result files. With names, those run here.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import BENCHMARKS
from benchmarks import _docs as docs
from benchmarks._common import DOC, RESULTS_DIR, ROOT, Options, say


def module(name: str) -> ModuleType:
    """The module of benchmark ``name``."""
    return importlib.import_module(f"benchmarks.{name}")


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return {"true": True, "false": False}.get(text.lower(), text)


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"one of {', '.join(BENCHMARKS)}")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes, a minute or two each")
    size.add_argument("--toy", action="store_true", help="tiny sizes (smoke tests)")
    ap.add_argument("--big", action="store_true", help="also the large variants (loading: 10M)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one parameter of the preset (see each module's PRESETS)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory of result files")
    ap.add_argument("--doc", type=Path, default=DOC, help="the document whose tables to rewrite")
    ap.add_argument("--docs", action="store_true", help="only regenerate the document's tables")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap.parse_args(argv)


def options(ns: argparse.Namespace) -> Options:
    params = {}
    for item in ns.set:
        key, _, value = item.partition("=")
        params[key.strip()] = _value(value.strip())
    preset = "quick" if ns.quick else "toy" if ns.toy else "default"
    return Options(
        preset=preset,
        out_dir=ns.out,
        big=ns.big,
        params=params,
        show_progress=not ns.no_progress,
    )


def regenerate(doc: Path, out_dir: Path) -> None:
    renderers = {name: module(name).render for name in BENCHMARKS}
    titles = {name: getattr(module(name), "TITLE", name) for name in BENCHMARKS}
    headlines = {name: module(name).headline for name in BENCHMARKS}
    updated = docs.update(doc, out_dir, renderers, titles, headlines)
    say(f"updated {doc} ({', '.join(updated) or 'no results yet'})")


def run_one(name: str, opts: Options) -> None:
    say(f"[bold cyan]{name}[/]: reproduce with [bold]{opts.command(name)}[/]")
    started = time.perf_counter()
    module(name).run(opts)
    say(f"[bold cyan]{name}[/] done in {time.perf_counter() - started:,.0f} s")


def run_all(argv: list[str], opts: Options, doc: Path) -> int:
    """Every benchmark in a subprocess of its own; returns the number that failed."""
    failed = 0
    started = time.perf_counter()
    for name in BENCHMARKS:
        cmd = [sys.executable, "-m", "benchmarks", name, *argv, "--no-docs-update"]
        say(f"[bold]>>> {opts.command(name)}[/]")
        rc = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), check=False).returncode
        if rc != 0:
            failed += 1
            say(f"[bold red]{name} failed (exit {rc})[/]")
    say(f"all benchmarks: {time.perf_counter() - started:,.0f} s")
    regenerate(doc, opts.out_dir)
    return failed


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    no_docs_update = "--no-docs-update" in args
    if no_docs_update:
        args.remove("--no-docs-update")
    ns = parse(args)
    opts = options(ns)
    unknown = [n for n in ns.names if n not in BENCHMARKS]
    if unknown:
        say(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    if ns.docs:
        regenerate(ns.doc, opts.out_dir)
        return 0
    if not ns.names:
        passthrough = [a for a in args if a not in ns.names]
        return 1 if run_all(passthrough, opts, ns.doc) else 0
    for name in ns.names:
        run_one(name, opts)
    if not no_docs_update and opts.preset == "default":
        regenerate(ns.doc, opts.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
