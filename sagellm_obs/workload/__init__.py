"""Synthetic, reproducible workloads for ``sagellm-obs run``, and replay of recorded ones.

A workload is a ``list[WorkItem]``: protocol requests plus when to send them. Generators are
seeded (same seed, same requests, byte for byte) and need no model or data file:

* :func:`phases` (the default): warm shared prefixes, a burst of long unrelated prompts that
  fills a small KV cache, shared prefixes again (see :mod:`sagellm_obs.workload.phases`);
* :func:`shared_prefix`: a few long system prompts shared by many short requests;
* :func:`chat_sessions`: interleaved multi-turn chats that re-send their history;
* :func:`long_prompt_short_answer`, :func:`short_prompt_long_answer` and :func:`mixed`;
* :func:`load_replay`: requests recorded in a JSONL file.

Arrival patterns (:func:`burst`, :func:`poisson`, :func:`fixed_concurrency`) set each item's send
time; :func:`summary_of` describes a workload before it runs. Only pydantic and the standard
library are imported.

Example:
    .. code-block:: python

        from sagellm_obs.workload import build_workload, poisson, summary_of

        items = build_workload("shared_prefix", seed=1, n_requests=200, arrival=poisson(20, seed=1))
        print(summary_of(items))
"""

from __future__ import annotations

from sagellm_obs.workload.arrivals import (
    Arrival,
    ArrivalKind,
    ArrivalLike,
    apply_arrivals,
    arrival_times,
    burst,
    fixed_concurrency,
    parse_arrival,
    poisson,
    resolve_arrival,
    schedule,
    within_duration,
)
from sagellm_obs.workload.chat import chat_sessions, session_name
from sagellm_obs.workload.describe import WorkloadSummary, summary_of
from sagellm_obs.workload.generators import (
    COMMON_PARAMETERS,
    DEFAULT_WORKLOAD,
    WORKLOADS,
    build_workload,
    workload_parameters,
)
from sagellm_obs.workload.item import (
    WorkItem,
    check_positive,
    make_request,
    prompt_words,
    request_id_for,
)
from sagellm_obs.workload.mixes import (
    LONG_PROMPT_SHORT_ANSWER,
    SHORT_PROMPT_LONG_ANSWER,
    long_prompt_short_answer,
    mixed,
    short_prompt_long_answer,
)
from sagellm_obs.workload.phases import PHASES, phases
from sagellm_obs.workload.replay import (
    REPLAY_KIND,
    BadLine,
    ReplayError,
    ReplayResult,
    load_replay,
    parse_replay,
)
from sagellm_obs.workload.shared_prefix import (
    DEFAULT_FAMILIES,
    DEFAULT_PREFIX_TOKENS,
    DEFAULT_SUFFIX_TOKENS,
    PREFIX_SEPARATOR,
    family_name,
    family_prefix,
    shared_prefix,
    shared_prefix_ratio,
)
from sagellm_obs.workload.text import (
    TOKENS_PER_WORD,
    VOCABULARY,
    TextGenerator,
    count_words,
    estimate_tokens,
    words_for_tokens,
)

__all__ = [
    "COMMON_PARAMETERS",
    "DEFAULT_FAMILIES",
    "DEFAULT_PREFIX_TOKENS",
    "DEFAULT_SUFFIX_TOKENS",
    "DEFAULT_WORKLOAD",
    "LONG_PROMPT_SHORT_ANSWER",
    "PHASES",
    "PREFIX_SEPARATOR",
    "REPLAY_KIND",
    "SHORT_PROMPT_LONG_ANSWER",
    "TOKENS_PER_WORD",
    "VOCABULARY",
    "WORKLOADS",
    "Arrival",
    "ArrivalKind",
    "ArrivalLike",
    "BadLine",
    "ReplayError",
    "ReplayResult",
    "TextGenerator",
    "WorkItem",
    "WorkloadSummary",
    "apply_arrivals",
    "arrival_times",
    "build_workload",
    "burst",
    "chat_sessions",
    "check_positive",
    "count_words",
    "estimate_tokens",
    "family_name",
    "family_prefix",
    "fixed_concurrency",
    "load_replay",
    "long_prompt_short_answer",
    "make_request",
    "mixed",
    "parse_arrival",
    "parse_replay",
    "phases",
    "poisson",
    "prompt_words",
    "request_id_for",
    "resolve_arrival",
    "schedule",
    "session_name",
    "shared_prefix",
    "shared_prefix_ratio",
    "short_prompt_long_answer",
    "summary_of",
    "within_duration",
    "words_for_tokens",
    "workload_parameters",
]
