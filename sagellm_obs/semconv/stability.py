"""Which GenAI names to emit: ``OTEL_SEMCONV_STABILITY_OPT_IN`` and its modes."""

from __future__ import annotations

import os
from typing import Final

# --- Which GenAI names to emit (OTEL_SEMCONV_STABILITY_OPT_IN) -----------------------------------
# OpenTelemetry instrumentations move to new GenAI names behind OTEL_SEMCONV_STABILITY_OPT_IN, a
# comma-separated list: ``gen_ai_latest_experimental`` selects the latest GenAI conventions, and
# ``<category>/dup`` emits the old and new names side by side during a migration (as ``http/dup``
# and ``database/dup`` do). sagellm-obs emits the latest names by default; the same variable
# selects the previous names (``gen_ai_legacy``, a value of ours: OpenTelemetry's default *is* the
# old names, so it defines no value for them) or both (``gen_ai_latest_experimental/dup``).
ENV_SEMCONV_OPT_IN: Final = "OTEL_SEMCONV_STABILITY_OPT_IN"
SEMCONV_LATEST: Final = "latest"
SEMCONV_LEGACY: Final = "legacy"
SEMCONV_DUP: Final = "dup"
SEMCONV_MODES: Final = (SEMCONV_LATEST, SEMCONV_LEGACY, SEMCONV_DUP)
SEMCONV_OPT_IN_VALUES: Final[dict[str, str]] = {
    "gen_ai_latest_experimental": SEMCONV_LATEST,
    "gen_ai_latest_experimental/dup": SEMCONV_DUP,
    "gen_ai_legacy": SEMCONV_LEGACY,
}


def genai_semconv_mode(value: str | None = None) -> str:
    """The GenAI naming mode (:data:`SEMCONV_LATEST`, ``LEGACY`` or ``DUP``) a setting asks for.

    ``value`` is a mode name or an ``OTEL_SEMCONV_STABILITY_OPT_IN`` list; ``None`` reads that
    variable. Unknown entries (other categories: ``http``, ``database/dup``...) are ignored; with
    no GenAI entry the mode is the latest. ``configure()`` reads this once.
    """
    raw = os.environ.get(ENV_SEMCONV_OPT_IN, "") if value is None else value
    if raw.strip() in SEMCONV_MODES:
        return raw.strip()
    modes = {
        SEMCONV_OPT_IN_VALUES[v.strip()]
        for v in raw.split(",")
        if v.strip() in SEMCONV_OPT_IN_VALUES
    }
    if SEMCONV_DUP in modes or modes == {SEMCONV_LATEST, SEMCONV_LEGACY}:
        return SEMCONV_DUP
    if modes == {SEMCONV_LEGACY}:
        return SEMCONV_LEGACY
    return SEMCONV_LATEST


def emits_latest(mode: str) -> bool:
    """Whether ``mode`` emits the current GenAI names."""
    return mode != SEMCONV_LEGACY


def emits_legacy(mode: str) -> bool:
    """Whether ``mode`` emits the previous GenAI names."""
    return mode != SEMCONV_LATEST
