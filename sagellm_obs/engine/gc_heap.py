"""Freezing the process's start-up heap, as vLLM's own server and EngineCore do.

CPython's oldest-generation collection walks every tracked object alive: after torch, vLLM and
a tokenizer are loaded that is hundreds of thousands (~609k in ``sagellm-obs serve``), and one
such collection stalled every request in flight for 0.35 – 0.57 s in our engine benchmark.
``gc.freeze()`` moves what is alive now into a permanent generation the collector skips; garbage
made later is still collected. The price: start-up objects that later become cyclic garbage stay
until :func:`release`. Freezes nest: the heap is unfrozen when the last holder releases it.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_holders = 0


def freeze() -> None:
    """Collect, then freeze everything alive out of the collector's reach (one hold)."""
    global _holders
    gc.collect()
    with _lock:
        gc.freeze()
        _holders += 1


def release() -> None:
    """Drop one hold of :func:`freeze`; the last one makes the frozen objects collectable again."""
    global _holders
    with _lock:
        if _holders == 0:
            return
        _holders -= 1
        if _holders == 0:
            gc.unfreeze()


def holders() -> int:
    """How many holds of :func:`freeze` are not released."""
    return _holders
