"""Decoding strategy and sampling parameters (sageLLM protocol ``sampling`` module).

The only validator in the whole protocol lives here: when ``strategy`` is not given explicitly it is
derived from ``temperature`` (below ``1e-5`` means greedy, anything else sampling). So
``SamplingParams()`` has ``strategy == SAMPLING`` because the default temperature is 1.0.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field, model_validator

__all__ = [
    "DEFAULT_SAMPLING_PARAMS",
    "GREEDY_TEMPERATURE_THRESHOLD",
    "DecodingStrategy",
    "SamplingParams",
    "SamplingPreset",
    "get_params",
]

GREEDY_TEMPERATURE_THRESHOLD = 1e-5
"""Temperatures below this are treated as greedy decoding."""


class DecodingStrategy(str, Enum):
    """How tokens are chosen."""

    GREEDY = "greedy"
    SAMPLING = "sampling"
    BEAM_SEARCH = "beam_search"
    CONTRASTIVE = "contrastive"
    SPECULATIVE = "speculative"


class SamplingParams(BaseModel):
    """Decoding parameters; if given on a ``Request`` they win over its temperature/top_p.

    Attributes:
        strategy: Decoding strategy. Derived from ``temperature`` when not set explicitly.
        temperature: Sampling temperature in [0, 2]; below 1e-5 means greedy.
        top_p: Nucleus-sampling mass in (0, 1].
        top_k: Top-k cut-off; 0 disables it, -1 means unlimited.
        beam_size: Number of beams for beam search (> 0).
        length_penalty: Beam-search length penalty.
        early_stopping: Beam search stops when ``beam_size`` hypotheses are finished.
        alpha: Contrastive-search degeneration weight in [0, 1].
        penalty_alpha: Contrastive-search penalty (>= 0).
        repetition_penalty: Repetition penalty (>= 1; 1 disables it).
        presence_penalty: OpenAI-style presence penalty in [-2, 2].
        frequency_penalty: OpenAI-style frequency penalty in [-2, 2].
        max_tokens: Output-token cap (> 0); ``Request.max_tokens`` overrides it.
        stop_sequences: Strings that end generation.
        n_speculative_tokens: Draft tokens per speculative step (>= 1).
        seed: Random seed.
        skip_special_tokens: Drop special tokens from the decoded text.
    """

    strategy: DecodingStrategy = DecodingStrategy.GREEDY
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=-1)
    beam_size: int = Field(default=4, gt=0)
    length_penalty: float = 1.0
    early_stopping: bool = True
    alpha: float = Field(default=0.6, ge=0.0, le=1.0)
    penalty_alpha: float = Field(default=0.6, ge=0.0)
    repetition_penalty: float = Field(default=1.0, ge=1.0)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    max_tokens: int | None = Field(default=None, gt=0)
    stop_sequences: list[str] | None = None
    n_speculative_tokens: int = Field(default=5, ge=1)
    seed: int | None = None
    skip_special_tokens: bool = True

    @model_validator(mode="after")
    def _auto_derive_strategy(self) -> SamplingParams:
        """Derives ``strategy`` from ``temperature`` unless ``strategy`` was set explicitly."""
        if "strategy" not in self.model_fields_set:
            self.strategy = (
                DecodingStrategy.GREEDY
                if self.temperature < GREEDY_TEMPERATURE_THRESHOLD
                else DecodingStrategy.SAMPLING
            )
        return self

    def validate_strategy_params(self) -> None:
        """Checks that the parameters make sense for ``strategy``; not run automatically.

        Raises:
            ValueError: SAMPLING with temperature < 1e-5, BEAM_SEARCH with ``beam_size <= 1``,
                CONTRASTIVE with ``alpha`` outside [0, 1] or negative ``penalty_alpha``, or
                SPECULATIVE with ``n_speculative_tokens < 1``.
        """
        if (
            self.strategy == DecodingStrategy.SAMPLING
            and self.temperature < GREEDY_TEMPERATURE_THRESHOLD
        ):
            raise ValueError(
                f"sampling strategy requires temperature >= {GREEDY_TEMPERATURE_THRESHOLD}, "
                f"got {self.temperature}"
            )
        if self.strategy == DecodingStrategy.BEAM_SEARCH and self.beam_size <= 1:
            raise ValueError(f"beam_search strategy requires beam_size > 1, got {self.beam_size}")
        if self.strategy == DecodingStrategy.CONTRASTIVE:
            if not 0.0 <= self.alpha <= 1.0:
                raise ValueError(f"contrastive strategy requires 0 <= alpha <= 1, got {self.alpha}")
            if self.penalty_alpha < 0.0:
                raise ValueError(
                    f"contrastive strategy requires penalty_alpha >= 0, got {self.penalty_alpha}"
                )
        if self.strategy == DecodingStrategy.SPECULATIVE and self.n_speculative_tokens < 1:
            raise ValueError(
                "speculative strategy requires n_speculative_tokens >= 1, "
                f"got {self.n_speculative_tokens}"
            )


class SamplingPreset(str, Enum):
    """Named parameter sets, see :func:`get_params`."""

    DETERMINISTIC = "deterministic"
    BALANCED = "balanced"
    CREATIVE = "creative"
    PRECISE = "precise"


def get_params(preset: SamplingPreset | str) -> SamplingParams:
    """Returns a fresh ``SamplingParams`` for a preset.

    DETERMINISTIC is greedy at temperature 0; BALANCED samples at temperature 0.7, top_p 0.9;
    CREATIVE samples at temperature 1.2, top_p 0.95; PRECISE is beam search with length penalty
    1.2. All other fields keep their defaults.

    Args:
        preset: A ``SamplingPreset`` or its string value.

    Returns:
        A new instance (safe to mutate).

    Raises:
        ValueError: Unknown preset name.
    """
    preset = SamplingPreset(preset)
    if preset is SamplingPreset.DETERMINISTIC:
        return SamplingParams(strategy=DecodingStrategy.GREEDY, temperature=0.0)
    if preset is SamplingPreset.BALANCED:
        return SamplingParams(strategy=DecodingStrategy.SAMPLING, temperature=0.7, top_p=0.9)
    if preset is SamplingPreset.CREATIVE:
        return SamplingParams(strategy=DecodingStrategy.SAMPLING, temperature=1.2, top_p=0.95)
    return SamplingParams(strategy=DecodingStrategy.BEAM_SEARCH, length_penalty=1.2)


DEFAULT_SAMPLING_PARAMS = SamplingParams(strategy=DecodingStrategy.GREEDY, temperature=1.0)
"""Greedy decoding (set explicitly), temperature 1.0, every other field at its default."""
