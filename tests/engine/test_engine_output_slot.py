"""``OutputSlot`` against vLLM's own ``RequestOutputCollector``: the same hand-off, put for put
(no engine needed; the engine's tests run it on real vLLM)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sagellm_obs.engine.vllm_requests import OutputSlot, _slot_for


def _output(tokens: list[int], *, finished: bool = False) -> Any:
    from vllm.outputs import CompletionOutput, RequestOutput

    comp = CompletionOutput(0, "".join(f"<{t}>" for t in tokens), tokens, None, None)
    return RequestOutput("r", None, [1], None, [comp], finished)


def _collector(aggregate: bool) -> Any:
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.output_processor import RequestOutputCollector

    kind = RequestOutputKind.DELTA if aggregate else RequestOutputKind.FINAL_ONLY
    return RequestOutputCollector(kind, "r")


def _seen(out: Any) -> tuple[list[int], str, bool]:
    comp = out.outputs[0]
    return list(comp.token_ids), comp.text, out.finished


async def _script(q: Any) -> list[Any]:
    """A reader that lags, then waits: what it reads, put for put."""
    seen: list[Any] = [q.get_nowait()]  # nothing yet
    q.put(_output([1]))
    q.put(_output([2, 3]))  # not read yet: merged with the first (DELTA) or replacing it
    seen.append(_seen(await q.get()))
    seen.append(q.get_nowait())
    reader = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)  # the reader waits
    q.put(_output([4], finished=True))
    seen.append(_seen(await reader))
    q.put(RuntimeError("engine dead"))
    with pytest.raises(RuntimeError, match="engine dead"):
        await q.get()
    q.put(_output([5]))
    q.put(ValueError("replaces what is held"))
    q.put(_output([6]))  # after an error: dropped
    with pytest.raises(ValueError, match="replaces"):
        q.get_nowait()
    seen.append(q.get_nowait())
    return seen


@pytest.mark.parametrize("aggregate", [True, False], ids=["DELTA", "FINAL_ONLY"])
def test_the_slot_hands_over_what_vllms_collector_does(aggregate: bool) -> None:
    ours = asyncio.run(_script(OutputSlot("r", aggregate)))
    vllms = asyncio.run(_script(_collector(aggregate)))
    assert ours == vllms
    merged = ([1, 2, 3], "<1><2><3>", False) if aggregate else ([2, 3], "<2><3>", False)
    assert ours[1] == merged


def test_outputs_that_do_not_merge_replace_what_is_held() -> None:
    """vLLM's pooling outputs (no ``add``) are replaced, not merged, in its collector and ours."""
    from vllm.outputs import PoolingRequestOutput

    for q in (OutputSlot("r", True), _collector(True)):
        first, second = (PoolingRequestOutput("r", None, [1], 0, False) for _ in range(2))
        q.put(first)
        q.put(second)
        assert q.get_nowait() is second


def test_a_put_after_its_reader_was_cancelled_is_kept() -> None:
    async def run() -> Any:
        slot = OutputSlot("r", True)
        reader = asyncio.ensure_future(slot.get())
        await asyncio.sleep(0)
        reader.cancel()
        await asyncio.sleep(0)
        slot.put(_output([7]))  # must not raise on the cancelled reader's future
        return _seen(await slot.get())

    assert asyncio.run(run()) == ([7], "<7>", False)


class _State:
    def __init__(self, queue: Any) -> None:
        self.queue = queue


class _LLM:
    def __init__(self) -> None:
        self.output_processor = self
        self.request_states: dict[str, _State] = {}


def test_the_slot_replaces_a_single_requests_collector_only() -> None:
    llm = _LLM()
    q = _collector(True)
    q.put(_output([9]))  # put before the swap (an engine error would be): carried over
    llm.request_states["r"] = _State(q)
    slot = _slot_for(llm, q)
    assert isinstance(slot, OutputSlot)
    assert llm.request_states["r"].queue is slot
    assert (slot.request_id, slot.aggregate) == ("r", True)
    assert _seen(slot.get_nowait()) == ([9], "<9>", False)

    fanned = _collector(True)  # n > 1: vLLM's child requests share the parent's collector
    llm.request_states = {"0_r": _State(fanned), "1_r": _State(fanned)}  # vLLM's child ids
    assert _slot_for(llm, fanned) is fanned
    assert all(s.queue is fanned for s in llm.request_states.values())
    other = _collector(True)  # vLLM holds another queue for the id
    llm.request_states["r"] = _State(other)
    assert _slot_for(llm, fanned) is fanned
    assert _slot_for(object(), fanned) is fanned  # another vLLM's layout
