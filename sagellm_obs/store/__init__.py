"""The embedded local store: OTLP-JSON-lines files in a run folder."""

from __future__ import annotations

from sagellm_obs.store.layout import MANIFEST
from sagellm_obs.store.reader import (
    ReadReport,
    StoreFormatError,
    StoreWarning,
    files_of,
    iter_jsonl,
)
from sagellm_obs.store.run import RunStore, new_run_id

__all__ = [
    "MANIFEST",
    "ReadReport",
    "RunStore",
    "StoreFormatError",
    "StoreWarning",
    "files_of",
    "iter_jsonl",
    "new_run_id",
]
