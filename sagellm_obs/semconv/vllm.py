"""vLLM's own Prometheus metric families (its ``/metrics``), the ones we read or compare with.

Family names as ``prometheus_client`` parses them: a counter family drops its ``_total`` suffix, a
histogram family its ``_bucket``/``_sum``/``_count``. docs/semconv.md maps them to ours.
"""

from __future__ import annotations

from typing import Final

VLLM_PREFIX_CACHE_QUERIES: Final = "vllm:prefix_cache_queries"
"""Counter: prompt tokens looked up in the prefix cache."""
VLLM_PREFIX_CACHE_HITS: Final = "vllm:prefix_cache_hits"
"""Counter: of which found."""
VLLM_PROMPT_TOKENS: Final = "vllm:prompt_tokens"
"""Counter: prompt tokens processed."""
VLLM_GENERATION_TOKENS: Final = "vllm:generation_tokens"
"""Counter: tokens generated."""
VLLM_REQUEST_SUCCESS: Final = "vllm:request_success"
"""Counter: finished requests, by ``finished_reason``."""
VLLM_TIME_TO_FIRST_TOKEN: Final = "vllm:time_to_first_token_seconds"
"""Histogram: arrival -> first token, per request."""
