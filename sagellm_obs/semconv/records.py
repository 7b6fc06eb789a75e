"""Keys of the run folder's own records: engine steps, KV-cache events, steps as metric points."""

from __future__ import annotations

from typing import Final

# --- Step records (local store, steps-*.jsonl) --------------------------------------------------
# One JSON object per engine step; keys below. Times are epoch nanoseconds (wall clock, converted
# once from vLLM's monotonic clock where needed).
STEP_TIME_UNIX_NANO: Final = "time_unix_nano"
STEP_ENGINE_ID: Final = "engine_id"
STEP_ENGINE_IDX: Final = "engine_idx"  # vLLM's engine_idx (data-parallel rank); absent: 0
STEP_INDEX: Final = "step"
STEP_RUNNING: Final = "running"
STEP_WAITING: Final = "waiting"
STEP_KV_USAGE: Final = "kv_cache_usage"
STEP_PREFIX_QUERIES: Final = "prefix_queries"
STEP_PREFIX_HITS: Final = "prefix_hits"
STEP_PROMPT_TOKENS: Final = "prompt_tokens"
STEP_CACHED_PROMPT_TOKENS: Final = "cached_prompt_tokens"
STEP_GENERATION_TOKENS: Final = "generation_tokens"
STEP_PREEMPTIONS: Final = "preemptions"
STEP_FINISHED: Final = "finished"

# KV cache events (the run folder's kv-events kind): one sageLLM KVHookPayload per block and vLLM
# event; our fields go in its metadata under these keys. Times are epoch nanoseconds (wall clock:
# vLLM stamps each event batch with time.time()).
KV_TIME_UNIX_NANO: Final = "time_unix_nano"
KV_ENGINE_ID: Final = "engine_id"
KV_ENGINE_IDX: Final = "engine_idx"  # vLLM's data-parallel rank
KV_KIND: Final = "kind"  # stored, reused, removed, cleared (KV_KINDS)
KV_BLOCK_HASH: Final = "block_hash"  # vLLM's block hash, 16 hex digits (its 64-bit int form)
KV_PARENT_BLOCK_HASH: Final = "parent_block_hash"  # the previous block's, null for a first block
KV_PREFIX_HASH: Final = (
    "prefix_hash"  # our sagellm.prefix.block_hashes entry for a full prompt block
)
KV_BLOCK_SIZE: Final = "block_size"  # tokens per block of the event (a partial block: fewer)
KV_MEDIUM: Final = "medium"  # vLLM's medium: GPU (the engine's own cache, CPU backend included)
KV_GROUP_IDX: Final = "group_idx"  # KV-cache group (one group for plain decoder models)
KV_BATCH_SEQ: Final = "batch_seq"  # the publisher's sequence number of the event batch
KV_STORED, KV_REUSED, KV_REMOVED, KV_CLEARED = "stored", "reused", "removed", "cleared"
KV_KINDS: Final = (KV_STORED, KV_REUSED, KV_REMOVED, KV_CLEARED)

# Step records written as OTel metric points (sagellm_obs.clickhouse): one point per step and
# field, named after the step metrics above; these name the rest and the points' attributes.
STEP_POINT_INDEX: Final = "sagellm.step"  # point attribute: the step counter
STEP_POINT_TIME_UNIX_NANO: Final = "sagellm.step.time_unix_nano"  # point attribute: exact time
STEP_POINT_CACHED_PROMPT_TOKENS: Final = "sagellm.prompt_tokens.cached"  # delta sum per step
STEP_POINT_FINISHED: Final = "sagellm.requests.finished"  # delta sum per step
