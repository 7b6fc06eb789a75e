"""The ``phases`` workload: its acts, their sizes and what each request of an act is."""

from __future__ import annotations

import pytest

from sagellm_obs.workload import build_workload
from sagellm_obs.workload.phases import PHASES, phases
from sagellm_obs.workload.shared_prefix import family_prefix
from sagellm_obs.workload.text import count_words, words_for_tokens


def _phase(item: object) -> str:
    return item.request.metadata["phase"]  # type: ignore[attr-defined,no-any-return]


def test_acts_in_order_with_the_requested_shares() -> None:
    items = phases(n_requests=200)
    names = [_phase(i) for i in items]
    assert names == ["warm"] * 80 + ["pressure"] * 60 + ["recover"] * 60
    assert tuple(dict.fromkeys(names)) == PHASES
    odd = phases(n_requests=7, warm_share=0.5, pressure_share=0.25)
    assert [_phase(i) for i in odd].count("pressure") == 2
    assert len(odd) == 7


def test_shared_acts_reuse_the_same_family_prefixes() -> None:
    items = phases(n_requests=40, seed=3)
    prefixes = {f"family-{f:02d}": family_prefix(3, f) for f in range(4)}
    for item in items:
        if _phase(item) == "pressure":
            assert item.family is None
            continue
        assert item.family in prefixes
        assert item.request.prompt.startswith(prefixes[item.family])
    warm = {i.family for i in items if _phase(i) == "warm"}
    recover = {i.family for i in items if _phase(i) == "recover"}
    assert warm == recover == set(prefixes)


def test_pressure_prompts_are_long_unrelated_and_spread() -> None:
    items = [i for i in phases(n_requests=100) if _phase(i) == "pressure"]
    words = [count_words(i.request.prompt) for i in items]
    mean = words_for_tokens(720)
    assert min(words) >= 0.75 * mean and max(words) <= 1.25 * mean
    assert (
        len(set(words)) > len(words) // 2
    )  # spread, so decodes cross block ends at different times
    assert len({i.request.prompt[:200] for i in items}) == len(items)  # no shared prefix
    assert {i.request.max_tokens for i in items} == {96}


def test_deterministic_and_registered() -> None:
    a = build_workload("phases", n_requests=30, seed=5)
    b = build_workload("phases", n_requests=30, seed=5)
    assert [i.request.prompt for i in a] == [i.request.prompt for i in b]
    assert [i.request.prompt for i in a] != [
        i.request.prompt for i in build_workload("phases", n_requests=30, seed=6)
    ]


@pytest.mark.parametrize(("warm", "pressure"), [(-0.1, 0.3), (0.8, 0.3), (0.5, -0.2)])
def test_bad_shares_are_rejected(warm: float, pressure: float) -> None:
    with pytest.raises(ValueError, match="warm_share"):
        phases(n_requests=10, warm_share=warm, pressure_share=pressure)
