"""Freezing the process's start-up heap, as vLLM's own server and EngineCore do.

CPython's oldest-generation collection walks every tracked object alive: after torch, vLLM and
a tokenizer are loaded that is hundreds of thousands (~609k in ``sagellm-obs serve``), and one
such collection stalled every request in flight for 0.35 – 0.57 s in our engine benchmark.
``gc.freeze()`` moves what is alive now into a permanent generation the collector skips; garbage
made later is still collected. The price: start-up objects that later become cyclic garbage stay
until :func:`release`. Freezes nest (:class:`~sagellm_obs.engine.holds.NestedHold`): the heap
is unfrozen when the last holder releases it.
"""

from __future__ import annotations

import gc

from sagellm_obs.engine.holds import NestedHold

_heap = NestedHold(gc.freeze, gc.unfreeze)


def freeze() -> None:
    """Collect, then freeze everything alive out of the collector's reach (one hold)."""
    gc.collect()
    _heap.hold()


def release() -> None:
    """Drop one hold of :func:`freeze`; the last one makes the frozen objects collectable again."""
    _heap.release()


def holders() -> int:
    """How many holds of :func:`freeze` are not released."""
    return _heap.holders
