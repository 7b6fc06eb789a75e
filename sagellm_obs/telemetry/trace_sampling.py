"""Sampling decisions for the direct spans of the telemetry thread, exactly as the SDK makes them.

Covered: the parent-based samplers of ``OTEL_TRACES_SAMPLER`` (``parentbased_always_on`` — the
default —, ``parentbased_always_off``, ``parentbased_traceidratio``) and any ``ParentBased`` whose
parent delegates are the SDK's always-on/always-off samplers and whose root is one of those or a
``TraceIdRatioBased``. They decide from the parent's flags or the trace id alone, add no
attributes and pass the parent's trace state on. Anything else (:meth:`SamplingPlan.of` returns
None) makes the telemetry thread go through ``Tracer.start_span``.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind

from sagellm_obs.telemetry import sdk_private


def _fixed(sampler: Any) -> bool | None:
    """True/False for the SDK's always-on/always-off samplers, None for anything else."""
    if sampler is ALWAYS_ON:
        return True
    if sampler is ALWAYS_OFF:
        return False
    return None


class SamplingPlan:
    """Sampling decisions of a parent-based sampler whose parent delegates are fixed.

    Args:
        sampler: The sampler.
        parts: Its root and parent delegates (:func:`sdk_private.parent_based_parts`).
    """

    def __init__(
        self, sampler: ParentBased, parts: tuple[Sampler, Sampler, Sampler, Sampler, Sampler]
    ) -> None:
        self.sampler = sampler
        root, *delegates = parts
        self.root_fixed = _fixed(root)
        self.root_ratio = root if type(root) is TraceIdRatioBased else None
        (
            self.remote_sampled,
            self.remote_not_sampled,
            self.local_sampled,
            self.local_not_sampled,
        ) = (bool(_fixed(d)) for d in delegates)

    @staticmethod
    def of(sampler: Sampler) -> SamplingPlan | None:
        """The plan for ``sampler``, or None when it is not covered (see the module docstring)."""
        if type(sampler) not in (ParentBased, ParentBasedTraceIdRatio):
            return None
        assert isinstance(sampler, ParentBased)
        parts = sdk_private.parent_based_parts(sampler)
        if parts is None:
            return None
        root, *delegates = parts
        if any(_fixed(d) is None for d in delegates):
            return None
        if _fixed(root) is None and type(root) is not TraceIdRatioBased:
            return None
        return SamplingPlan(sampler, parts)

    def root(self, trace_id: int, name: str, attributes: dict[str, Any] | None) -> bool:
        """Whether a SERVER span without a (valid) parent is sampled."""
        if self.root_fixed is not None:
            return self.root_fixed
        assert self.root_ratio is not None  # decided by the trace id alone
        result = self.root_ratio.should_sample(None, trace_id, name, SpanKind.SERVER, attributes)
        return result.decision is Decision.RECORD_AND_SAMPLE
