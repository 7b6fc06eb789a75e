"""Reading JSON-lines files of a run folder, with clear errors for bad input.

A torn last line (no trailing newline, not valid JSON) is what a crash mid-write leaves behind:
it is always skipped with a warning. Any other malformed line raises :class:`StoreFormatError`
naming the file and line, or, with ``errors="skip"``, is skipped and counted.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sagellm_obs.store.layout import data_files

Errors = Literal["raise", "skip"]


class StoreFormatError(ValueError):
    """A malformed record in a trace file; names the file and the 1-based line."""

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = message
        super().__init__(f"{self.path}:{line}: {message}")


@dataclass
class ReadReport:
    """What a read skipped: torn last lines and (with errors="skip") bad lines."""

    skipped: list[tuple[str, int, str]] = field(default_factory=list)

    def add(self, path: Path, line: int, message: str) -> None:
        self.skipped.append((str(path), line, message))

    def warn(self) -> None:
        """Emit one warning summarising what was skipped, if anything was."""
        if self.skipped:
            first = self.skipped[0]
            warnings.warn(
                f"skipped {len(self.skipped)} bad record(s); first at {first[0]}:{first[1]}: "
                f"{first[2]}",
                StoreWarning,
                stacklevel=3,
            )


class StoreWarning(UserWarning):
    """Records were skipped while reading a store."""


def iter_jsonl(
    path: Path | str,
    *,
    errors: Errors = "raise",
    report: ReadReport | None = None,
    data: bytes | None = None,
    first_line: int = 1,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each JSON object line of ``path``.

    Blank lines are ignored. A line that is not a JSON object raises :class:`StoreFormatError`
    (``errors="raise"``) or is recorded in ``report`` and skipped (``errors="skip"``).
    ``data`` (with the number of its first line) reads part of the file already in memory,
    e.g. the lines a tail reader found appended since its last read.
    """
    path = Path(path)
    report = report if report is not None else ReadReport()
    if data is None:
        with open(path, "rb") as fh:
            data = fh.read()
    if not data:
        return
    lines = data.split(b"\n")
    torn = not data.endswith(b"\n")
    last = len(lines) if torn else len(lines) - 1
    for i in range(last):
        raw = lines[i].strip()
        if not raw:
            continue
        lineno = i + first_line
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: bad line
            if torn and i == last - 1:
                report.add(path, lineno, "torn last line (incomplete write)")
                warnings.warn(
                    f"{path}:{lineno}: skipped a torn last line (incomplete write)",
                    StoreWarning,
                    stacklevel=2,
                )
                return
            msg = f"not valid JSON: {exc}"
            if errors == "raise":
                raise StoreFormatError(path, lineno, msg) from None
            report.add(path, lineno, msg)
            continue
        yield lineno, obj


def files_of(run: Path | str, kind: str) -> list[Path]:
    """The ``kind`` files of a run folder in write order (or ``[run]`` if it is a file)."""
    run = Path(run)
    if run.is_file():
        return [run]
    return data_files(run, kind)
