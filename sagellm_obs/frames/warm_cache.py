"""Did the run start on a warm prefix cache? Hits the run could not have caused itself.

A benchmark that starts on a prefix cache warmed by an earlier run (or a warm-up with the same
prompts) reports inflated throughput and deflated TTFT (vLLM #52884: up to 86 % more
throughput; #54227: 49x lower TTFT). A shared-prefix workload *should* hit after its first
request of each prefix, so "some early request hit" is no sign; what is, is a hit on prompt
blocks **no request of this run had sent before**: those blocks were in the cache before the run.

The rule, per request, on one engine's cache (an engine id and data-parallel rank):

- *seen blocks*: the full 128-token prompt blocks (our ``sagellm.prefix.block_hashes``) of the
  requests of the run that EngineCore scheduled before this one (its ``queue`` span's end, the
  first scheduling; in one step, FCFS: the one queued first), whatever their arrival order;
  without a ``queue`` span, the arrival stands for both;
- the request may legitimately hit its leading seen blocks, ``leading x 128`` tokens; a hit of a
  whole block more (``cached >= (leading + 1) x 128``) is *inherited* from before the run;
- the run's **first requests** are its first :data:`FIRST_SHARE` by arrival (at least one); the
  run is a **warm start** when one of them has inherited hits. ``inherited_tokens`` and
  ``warm_requests`` count them over the whole run.

The one-block slack keeps a server with smaller blocks (a GPU's 16) from being flagged for the
partial block after a shared prefix; it also lets a warm hit shorter than 128 tokens pass.

Without spans (``run --endpoint``: client rows only), the same rule runs on the workload's
families (shared prefix or chat session) instead of block hashes, per server: the family's
*opening group* is its requests sent before the first of their first tokens came back; the one
the server prefilled first is among them and had no sibling blocks to hit, so when every one of
them hit, the first one sent is counted with the smallest of their hits as inherited. The
family's other requests are checked but never inherited; any hit of a request without a family
is. It needs the server to report cached tokens in ``usage.prompt_tokens_details`` (ours does;
vLLM with ``--enable-prompt-tokens-details``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

import polars as pl

from sagellm_obs import semconv as sc
from sagellm_obs.frames.schemas import attribute

__all__ = ["FIRST_SHARE", "WarmCache", "warm_cache", "warm_cache_of_clients"]

FIRST_SHARE: Final = 0.1
"""The run's "first requests": this share of its requests, by arrival (at least one)."""

BLOCK_TOKENS: Final = 128
"""Tokens per block of our prefix hashes (vLLM's CPU block size)."""


@dataclass(frozen=True)
class WarmCache:
    """The warm-cache check of one run.

    Attributes:
        checked: Requests the rule could judge (their cached tokens known).
        first_requests: How many first requests (by arrival) the warm-start flag looks at.
        warm_first: Of those, the ones with inherited hits.
        warm_requests: Requests with inherited hits, in the whole run.
        inherited_tokens: Their cached tokens beyond what the run itself had sent.
        basis: ``"prefix blocks"`` (our spans' block hashes) or ``"families"`` (client rows).
    """

    checked: int = 0
    first_requests: int = 0
    warm_first: int = 0
    warm_requests: int = 0
    inherited_tokens: int = 0
    basis: str = ""

    @property
    def warm_start(self) -> bool:
        """One of the run's first requests hit blocks the run had not sent."""
        return self.warm_first > 0

    def as_dict(self) -> dict[str, Any]:
        """Plain data, with ``warm_start``."""
        return {**asdict(self), "warm_start": self.warm_start}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WarmCache:
        """Back from :meth:`as_dict` (unknown keys ignored)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def word(self) -> str:
        """The flag, short: ``YES (2 ...)``, ``no``, ``not checked``."""
        if not self.checked:
            return "not checked"
        if self.warm_start:
            return f"YES ({self.warm_first} hit blocks the run had not sent)"
        return "no (inherited hits later in the run)" if self.warm_requests else "no"

    def text(self) -> str:
        """One line for the summary."""
        if not self.checked:
            return "not checked (no cached-token counts)"
        if not self.warm_requests:
            return f"no: no request hit blocks the run had not sent ({self.basis})"
        head = "YES: " if self.warm_start else "no warm start, but "
        return (
            f"{head}{self.warm_first} of the first {self.first_requests} requests and "
            f"{self.warm_requests} in all hit {self.inherited_tokens} prompt tokens this run had "
            f"not sent ({self.basis}): the cache was warm before the run"
        )


def _first_n(n: int) -> int:
    return max(1, math.ceil(n * FIRST_SHARE)) if n else 0


def warm_cache(
    requests: pl.DataFrame,
    spans: pl.DataFrame | pl.LazyFrame,
    *,
    client: Iterable[Mapping[str, Any]] | None = None,
) -> WarmCache:
    """The warm-cache check of a run's requests, on their prefix blocks (see the module doc).

    Args:
        requests: A ``requests`` frame (our request spans; vLLM-only rows have no cached tokens
            and are not judged).
        spans: The ``spans`` frame the requests came from (for the block hashes), or a LazyFrame
            of it (``Frames.scan_spans()``: only the request and queue spans are read).
        client: Judge only the requests of these client rows (``request_id``,
            ``client_start_unix_nano``): a client run's, when the server's folder also holds
            earlier runs. A rerun of a workload reuses its request ids, so of the requests with
            one id the one that arrived nearest the client's start is taken. None: all.
    """
    req = requests.filter(pl.col("cached_tokens").is_not_null(), pl.col("arrival").is_not_null())
    if client is not None:
        req = _of_clients(req, client)
    if req.is_empty():
        return WarmCache()
    lazy = spans.lazy()
    hashes = (
        lazy.filter(pl.col("kind") == "SERVER", pl.col("request_id").is_not_null())
        .select(
            "span_id",
            attribute(sc.SAGELLM_PREFIX_HASH).str.json_decode(pl.List(pl.String)).alias("blocks"),
        )
        .unique("span_id")
    )
    # EngineCore's own stamps: the queue span runs from queueing to first scheduling
    stamps = (
        lazy.filter(pl.col("name") == sc.SPAN_QUEUE, pl.col("parent_span_id").is_not_null())
        .select(
            pl.col("parent_span_id").alias("span_id"),
            pl.col("end").dt.epoch("us").alias("scheduled_us"),
            pl.col("start").dt.epoch("us").alias("queued_us"),
        )
        .unique("span_id")
    )
    # A LazyFrame over a run's files reads only these rows and columns, not the whole frame.
    hashes_df, stamps_df = pl.collect_all([hashes, stamps])
    rows = (
        req.join(hashes_df, on="span_id", how="left")
        .join(stamps_df, on="span_id", how="left")
        .with_columns(
            pl.col("arrival").dt.epoch("us").alias("at_us"),
            pl.col("scheduled_us").fill_null(pl.col("arrival").dt.epoch("us")),
            pl.col("queued_us").fill_null(pl.col("arrival").dt.epoch("us")),
        )
        .sort("at_us")
    )
    first = _first_n(rows.height)
    judged: list[tuple[int, int]] = []  # (arrival rank, inherited tokens)
    for _, engine in rows.with_row_index("rank").group_by(
        ["engine_id", "engine_idx"], maintain_order=True
    ):
        judged.extend(_judge_engine(engine))
    return _result(judged, rows.height, first, "prefix blocks")


def _judge_engine(rows: pl.DataFrame) -> list[tuple[int, int]]:
    """(rank, inherited tokens) of each request of one engine's cache, in scheduling order."""
    seen: set[str] = set()
    out: list[tuple[int, int]] = []
    for r in rows.sort(["scheduled_us", "queued_us"], maintain_order=True).iter_rows(named=True):
        blocks: list[str] = list(r["blocks"] or [])
        leading = 0
        for h in blocks:  # chained hashes: a seen block means its whole prefix was seen
            if h not in seen:
                break
            leading += 1
        cached = int(r["cached_tokens"])
        allowed = leading * BLOCK_TOKENS
        out.append((int(r["rank"]), cached - allowed if cached >= allowed + BLOCK_TOKENS else 0))
        seen.update(blocks)
    return out


def _of_clients(req: pl.DataFrame, client: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    starts = pl.DataFrame(
        [
            (str(r["request_id"]), int(r["client_start_unix_nano"]) // 1000)
            for r in client
            if r.get("request_id") is not None and r.get("client_start_unix_nano") is not None
        ],
        schema={"request_id": pl.String, "_client_us": pl.Int64},
        orient="row",
    ).unique("request_id")
    return (
        req.join(starts, on="request_id", how="inner")
        .sort((pl.col("arrival").dt.epoch("us") - pl.col("_client_us")).abs())
        .unique("request_id", keep="first", maintain_order=True)
        .drop("_client_us")
    )


def warm_cache_of_clients(client: Iterable[Mapping[str, Any]]) -> WarmCache:
    """The warm-cache check of client rows (``run --endpoint``), on the workload's families.

    Rows need ``cached_tokens`` (from the server's usage) to be judged; ``replica`` keeps the
    servers' caches apart, ``client_start_unix_nano`` orders the rows. Of each family on one
    server, the request the server prefilled first cannot have hit a sibling's blocks; which one
    that was, the client cannot see (a request sent a moment later may be prefilled first), but
    it was sent before any of the family's first tokens came back (:func:`_opening`). When every
    request of that opening group hit, the first one's hit came from before the run.
    """
    rows = sorted(
        (r for r in client if r.get("client_start_unix_nano") is not None),
        key=lambda r: int(r["client_start_unix_nano"]),
    )
    judged: dict[int, int] = {}  # rank -> inherited tokens
    families: dict[tuple[str, str], list[tuple[int, Mapping[str, Any]]]] = {}
    for rank, r in enumerate(rows):
        cached = r.get("cached_tokens")
        if cached is not None:
            # without a family nothing of the run can have put its prefix in the cache
            judged[rank] = max(int(cached), 0) if r.get("family") is None else 0
        if r.get("family") is not None:
            key = (str(r.get("replica") or ""), str(r["family"]))
            families.setdefault(key, []).append((rank, r))
    for members in families.values():
        opening = _opening(members)
        hits = [r.get("cached_tokens") for _, r in opening]
        if all(h is not None and int(h) > 0 for h in hits):
            judged[opening[0][0]] = min(int(h) for h in hits if h is not None)
    return _result(sorted(judged.items()), len(rows), _first_n(len(rows)), "families")


def _opening(members: list[tuple[int, Mapping[str, Any]]]) -> list[tuple[int, Mapping[str, Any]]]:
    """A family's requests sent before the first of their first tokens came back (send order).

    The one the server scheduled first is among them: it was scheduled no later than the request
    whose first token came back first, and sent before it was scheduled. An answer without text
    (no TTFT) was scheduled before it ended (``client_e2e_s``); a failed request may never have
    been, so it bounds nothing. Without any bound, the whole family is the group.
    """
    bounds = [
        int(r["client_start_unix_nano"]) + int(after * 1e9)
        for _, r in members
        if (after := _scheduled_within_s(r)) is not None
    ]
    until = min(bounds, default=None)
    return [m for m in members if until is None or int(m[1]["client_start_unix_nano"]) <= until]


def _scheduled_within_s(row: Mapping[str, Any]) -> float | None:
    """Seconds after its send by which the server had surely scheduled the request, if known."""
    keys = ("client_ttft_s",) if row.get("error") is not None else ("client_ttft_s", "client_e2e_s")
    for key in keys:
        value = row.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    return None


def _result(judged: list[tuple[int, int]], n: int, first: int, basis: str) -> WarmCache:
    if not judged:
        return WarmCache(first_requests=first, basis=basis)
    warm = [(rank, tokens) for rank, tokens in judged if tokens > 0]
    return WarmCache(
        checked=len(judged),
        first_requests=first,
        warm_first=sum(1 for rank, _ in warm if rank < first),
        warm_requests=len(warm),
        inherited_tokens=sum(tokens for _, tokens in warm),
        basis=basis,
    )
