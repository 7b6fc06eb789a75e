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

_PARENT_DELEGATES = (
    "_remote_parent_sampled",
    "_remote_parent_not_sampled",
    "_local_parent_sampled",
    "_local_parent_not_sampled",
)


def _fixed(sampler: Any) -> bool | None:
    """True/False for the SDK's always-on/always-off samplers, None for anything else."""
    if sampler is ALWAYS_ON:
        return True
    if sampler is ALWAYS_OFF:
        return False
    return None


class SamplingPlan:
    """Sampling decisions of a parent-based sampler whose parent delegates are fixed."""

    # The delegates are private attributes of ParentBased (stable since SDK 1.0); a missing one
    # means "not covered", never an error.
    def __init__(self, sampler: ParentBased) -> None:
        self.sampler = sampler
        root = sampler._root
        self.root_fixed = _fixed(root)
        self.root_ratio = root if type(root) is TraceIdRatioBased else None
        (
            self.remote_sampled,
            self.remote_not_sampled,
            self.local_sampled,
            self.local_not_sampled,
        ) = (bool(_fixed(getattr(sampler, name))) for name in _PARENT_DELEGATES)

    @staticmethod
    def of(sampler: Sampler) -> SamplingPlan | None:
        """The plan for ``sampler``, or None when it is not covered (see the module docstring)."""
        if type(sampler) not in (ParentBased, ParentBasedTraceIdRatio):
            return None
        if any(_fixed(getattr(sampler, n, None)) is None for n in _PARENT_DELEGATES):
            return None
        root = getattr(sampler, "_root", None)
        if _fixed(root) is None and type(root) is not TraceIdRatioBased:
            return None
        assert isinstance(sampler, ParentBased)
        return SamplingPlan(sampler)

    def root(self, trace_id: int, name: str, attributes: dict[str, Any]) -> bool:
        """Whether a SERVER span without a (valid) parent is sampled."""
        if self.root_fixed is not None:
            return self.root_fixed
        assert self.root_ratio is not None  # decided by the trace id alone
        result = self.root_ratio.should_sample(None, trace_id, name, SpanKind.SERVER, attributes)
        return result.decision is Decision.RECORD_AND_SAMPLE
