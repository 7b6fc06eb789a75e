"""What vLLM's output stream of one request has said so far (``DELTA`` outputs)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestOutputs:
    """Accumulates one request's ``RequestOutput`` stream: tokens, text, stats, gaps.

    Attributes:
        stream: Measure the inter-token gaps (``itl_ms``) as outputs arrive.
        on_final: Called with vLLM's final ``RequestOutput`` (cheap, must not raise).
    """

    stream: bool
    on_final: Callable[[Any], None] | None = None
    token_ids: list[int] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)
    #: Frontend arrival gaps of the output tokens after the first, ms (streams only).
    itl_ms: list[float] = field(default_factory=list)
    #: vLLM's ``RequestStateStats`` of the latest output.
    stats: Any = None
    prompt_ids: Any = None
    cached_tokens: int = 0
    vllm_reason: str | None = None
    finished: bool = False
    _last_t: float = 0.0

    def add(self, out: Any) -> Any:
        """Take one output; returns its completion if it carries new tokens, else None."""
        self.stats = out.metrics
        comp = out.outputs[0] if out.outputs else None
        if out.prompt_token_ids is not None:
            self.prompt_ids = out.prompt_token_ids
        if out.finished:
            self.finished = True
            if self.on_final is not None:
                with contextlib.suppress(Exception):
                    self.on_final(out)
            self.cached_tokens = int(out.num_cached_tokens or 0)
            if comp is not None:
                self.vllm_reason = comp.finish_reason
        if comp is None or not comp.token_ids:
            return None
        self.token_ids.extend(comp.token_ids)
        self.text_parts.append(comp.text)
        if self.stream:
            now = time.monotonic()
            if self._last_t:
                self.itl_ms.append((now - self._last_t) * 1000.0)
            # Tokens that arrive in one output share its arrival time.
            self.itl_ms.extend([0.0] * (len(comp.token_ids) - 1))
            self._last_t = now
        return comp

    @property
    def text(self) -> str:
        """The completion text so far."""
        return "".join(self.text_parts)
