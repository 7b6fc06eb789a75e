"""Reading a written report back: its tables, chart specs and external references."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

EXTERNAL = re.compile(
    r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I
)


class _Tables(HTMLParser):
    """Collects every table as a caption and rows of (cell text, cell class)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str]]]] = {}
        self._caption: str | None = None
        self._rows: list[list[tuple[str, str]]] | None = None
        self._cell: list[str] | None = None
        self._cls = ""
        self._in_caption = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._rows, self._caption = [], ""
        elif tag == "caption":
            self._in_caption = True
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell, self._cls = [], dict(attrs).get("class") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption":
            self._in_caption = False
        elif tag in ("td", "th") and self._cell is not None and self._rows is not None:
            self._rows[-1].append(("".join(self._cell).strip(), self._cls))
            self._cell = None
        elif tag == "table" and self._rows is not None:
            self.tables[self._caption or ""] = self._rows
            self._rows = None

    def handle_data(self, data: str) -> None:
        if self._in_caption:
            self._caption = (self._caption or "") + data
        elif self._cell is not None:
            self._cell.append(data)


def tables(page: str) -> dict[str, list[list[tuple[str, str]]]]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def table_dict(rows: list[list[tuple[str, str]]]) -> dict[str, list[str]]:
    """Rows by their first cell (header row included), cell texts only."""
    return {row[0][0]: [text for text, _ in row[1:]] for row in rows if row}


def specs(page: str) -> dict[str, dict[str, Any]]:
    found = re.findall(
        r'<script type="application/json" id="spec-([^"]+)">(.*?)</script>', page, re.S
    )
    return {key: json.loads(body) for key, body in found}
