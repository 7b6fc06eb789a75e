"""Synthetic workload generators: determinism, shapes, request conventions and the registry."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

import sagellm_obs.workload as wl
from sagellm_obs.protocol import Request, validate
from sagellm_obs.workload import WorkItem

ALL_NAMES = sorted(wl.WORKLOADS)


def _dump(items: list[WorkItem]) -> list[tuple[str, float | None, str | None, str | None, str]]:
    return [(i.request.model_dump_json(), i.at, i.session_id, i.family, i.kind) for i in items]


@pytest.mark.parametrize("name", ALL_NAMES)
def test_same_seed_same_requests(name: str) -> None:
    a = wl.build_workload(name, seed=3, n_requests=12, arrival="poisson:10")
    b = wl.build_workload(name, seed=3, n_requests=12, arrival="poisson:10")
    assert len(a) == 12
    assert _dump(a) == _dump(b)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_different_seed_different_requests(name: str) -> None:
    a = wl.build_workload(name, seed=1, n_requests=8)
    b = wl.build_workload(name, seed=2, n_requests=8)
    texts_a = [i.request.model_dump_json(exclude={"request_id", "trace_id"}) for i in a]
    texts_b = [i.request.model_dump_json(exclude={"request_id", "trace_id"}) for i in b]
    assert texts_a != texts_b
    assert {i.request.request_id for i in a}.isdisjoint(i.request.request_id for i in b)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_request_validates_and_follows_conventions(name: str) -> None:
    items = wl.build_workload(name, seed=5, n_requests=20)
    ids = [i.request.request_id for i in items]
    assert len(set(ids)) == len(ids)
    for index, item in enumerate(items):
        req = item.request
        again = validate(Request, req.model_dump(mode="json"))
        assert again == req
        assert req.request_id == f"{item.kind}-5-{index:05d}"
        assert req.trace_id == req.request_id
        assert req.prompt or req.messages
        assert req.metadata is not None
        assert req.metadata["ignore_eos"] is True
        assert req.metadata["workload"] == item.kind == name
        assert req.metadata["family"] == item.family
        assert item.at == 0.0  # burst by default


def test_max_tokens_is_passed_through() -> None:
    for name in ("shared_prefix", "chat_sessions", "long_prompt_short_answer"):
        items = wl.build_workload(name, n_requests=4, max_tokens=7)
        assert {i.request.max_tokens for i in items} == {7}


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_counts_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="n_requests"):
        wl.shared_prefix(n_requests=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_tokens"):
        wl.short_prompt_long_answer(max_tokens=bad)  # type: ignore[arg-type]


# --- shared_prefix -----------------------------------------------------------------------------


def test_shared_prefix_families_share_an_exact_prefix() -> None:
    prefix_tokens, suffix_tokens = 400, 30
    items = wl.shared_prefix(
        seed=11, n_requests=40, families=4, prefix_tokens=prefix_tokens, suffix_tokens=suffix_tokens
    )
    by_family: dict[str, list[str]] = {}
    for item in items:
        assert item.family is not None
        by_family.setdefault(item.family, []).append(item.request.prompt)
    assert sorted(by_family) == [wl.family_name(f) for f in range(4)]
    assert all(len(prompts) == 10 for prompts in by_family.values())  # spread evenly
    prefixes = {}
    for f in range(4):
        prefix = wl.family_prefix(11, f, prefix_tokens)
        prefixes[f] = prefix
        assert wl.count_words(prefix) == wl.words_for_tokens(prefix_tokens)
        # several 128-token KV blocks under the documented tokens-per-word assumption
        assert wl.estimate_tokens(prefix) >= 3 * 128
        prompts = by_family[wl.family_name(f)]
        assert all(p.startswith(prefix + wl.PREFIX_SEPARATOR) for p in prompts)
        suffixes = [p[len(prefix) + len(wl.PREFIX_SEPARATOR) :] for p in prompts]
        assert len(set(suffixes)) == len(suffixes)  # every request brings its own suffix
        assert all(wl.count_words(s) == wl.words_for_tokens(suffix_tokens) for s in suffixes)
    # families differ from their first word on
    first_words = {p.split()[0] for p in prefixes.values()}
    assert len(set(prefixes.values())) == 4
    assert len(first_words) >= 2


def test_shared_prefix_ratio_is_as_documented() -> None:
    ratio = wl.shared_prefix_ratio(400, 30)
    assert ratio == pytest.approx(400 / 430, abs=0.005)
    items = wl.shared_prefix(seed=2, n_requests=16, prefix_tokens=400, suffix_tokens=30)
    for item in items:
        assert item.family is not None
        f = int(item.family.rsplit("-", 1)[1])
        prefix_words = wl.count_words(wl.family_prefix(2, f, 400))
        assert prefix_words / wl.count_words(item.request.prompt) == pytest.approx(ratio)
    assert wl.shared_prefix_ratio(100, 100) == pytest.approx(0.5)


def test_shared_prefix_interleaves_families() -> None:
    items = wl.shared_prefix(seed=0, n_requests=64, families=4)
    families = [i.family for i in items]
    changes = sum(a != b for a, b in itertools.pairwise(families))
    assert changes > 20  # not grouped family by family


# --- chat_sessions -----------------------------------------------------------------------------


def test_chat_turns_resend_history_in_order() -> None:
    items = wl.chat_sessions(seed=4, n_requests=24, turns=4, arrival=wl.poisson(50, seed=4))
    sessions: dict[str, list[WorkItem]] = {}
    for item in items:
        assert item.session_id is not None
        assert item.family == item.session_id
        assert item.request.prompt == ""
        sessions.setdefault(item.session_id, []).append(item)
    assert len(sessions) == 6
    for turns in sessions.values():
        assert [t.request.metadata["turn"] for t in turns] == list(range(4))  # type: ignore[index]
        previous: list[dict[str, object]] | None = None
        previous_at = -1.0
        for t in turns:
            msgs = [m.model_dump() for m in t.request.messages or []]
            assert msgs[0]["role"] == "system"
            assert msgs[-1]["role"] == "user"
            assert [m["role"] for m in msgs[1:]] == ["user", "assistant"] * (
                (len(msgs) - 2) // 2
            ) + ["user"]
            if previous is not None:
                assert msgs[: len(previous)] == previous
                assert len(msgs) == len(previous) + 2
            previous = msgs
            assert t.at is not None
            assert t.at >= previous_at
            previous_at = t.at
    # sessions interleave: the list is not session after session
    order = [i.session_id for i in items]
    assert order != sorted(order, key=lambda s: order.index(s))


def test_chat_sessions_cut_at_n_requests() -> None:
    items = wl.chat_sessions(seed=0, n_requests=10, turns=4)
    assert len(items) == 10
    assert len({i.session_id for i in items}) == 3
    with pytest.raises(ValueError, match="sessions"):
        wl.chat_sessions(n_requests=10, turns=2, sessions=2)


# --- mixes -------------------------------------------------------------------------------------


def test_long_and_short_shapes() -> None:
    long_items = wl.long_prompt_short_answer(n_requests=5)
    short_items = wl.short_prompt_long_answer(n_requests=5)
    assert all(i.request.max_tokens == 16 for i in long_items)
    assert all(i.request.max_tokens == 256 for i in short_items)
    assert min(i.prompt_words for i in long_items) > 10 * max(i.prompt_words for i in short_items)


def test_mixed_ratio_and_cap() -> None:
    items = wl.mixed(seed=1, n_requests=40, long_ratio=0.25)
    shapes = [i.request.metadata["shape"] for i in items]  # type: ignore[index]
    assert shapes.count(wl.LONG_PROMPT_SHORT_ANSWER) == 10
    assert shapes.count(wl.SHORT_PROMPT_LONG_ANSWER) == 30
    assert shapes != sorted(shapes)  # shuffled
    capped = wl.mixed(seed=1, n_requests=40, long_ratio=0.25, max_tokens=64)
    assert {i.request.max_tokens for i in capped} == {16, 64}
    with pytest.raises(ValueError, match="long_ratio"):
        wl.mixed(long_ratio=1.5)


# --- registry ----------------------------------------------------------------------------------


def test_registry_names_and_unknown_name() -> None:
    assert wl.DEFAULT_WORKLOAD == "phases"
    assert set(wl.WORKLOADS) == {
        "shared_prefix",
        "chat_sessions",
        "long_prompt_short_answer",
        "short_prompt_long_answer",
        "mixed",
        "phases",
    }
    assert wl.build_workload("shared-prefix", n_requests=2)[0].kind == "shared_prefix"
    with pytest.raises(ValueError, match="unknown workload 'nope'") as info:
        wl.build_workload("nope")
    for name in wl.WORKLOADS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="prefix_tokens"):
        wl.build_workload("chat_sessions", prefix_tokens=3)


def test_every_generator_takes_the_common_parameters() -> None:
    for name in wl.WORKLOADS:
        assert set(wl.COMMON_PARAMETERS) <= set(wl.workload_parameters(name))


def test_summary_of() -> None:
    items = wl.chat_sessions(seed=0, n_requests=8, turns=2, arrival="poisson:4")
    summary = wl.summary_of(items)
    assert summary.n_items == 8
    assert summary.kinds == {"chat_sessions": 8}
    assert summary.n_sessions == summary.n_families == 4
    assert summary.n_chat == 8
    assert summary.total_max_tokens == 8 * 32
    assert summary.mean_prompt_words == pytest.approx(sum(i.prompt_words for i in items) / 8)
    assert summary.first_at == items[0].at
    assert summary.span_s == pytest.approx(items[-1].at - items[0].at)  # type: ignore[operator]
    assert "8 requests" in str(summary)
    empty = wl.summary_of([])
    assert empty.n_items == 0
    assert empty.span_s is None
    closed = wl.summary_of(wl.shared_prefix(n_requests=3, arrival=wl.fixed_concurrency(2)))
    assert closed.n_scheduled == 0
    assert "closed loop" in str(closed)


def test_text_generator_is_deterministic_and_sized() -> None:
    a = wl.TextGenerator(9).text(400)
    assert a == wl.TextGenerator(9).text(400)
    assert a != wl.TextGenerator(10).text(400)
    assert wl.count_words(a) == wl.words_for_tokens(400) == round(400 / wl.TOKENS_PER_WORD)
    assert wl.TextGenerator(1).text(0) == ""
    assert wl.words_for_tokens(1) == 1
    assert a.endswith(".")
    assert {w.strip(".").lower() for w in a.split()} <= set(wl.VOCABULARY)
    assert len(set(wl.VOCABULARY)) == len(wl.VOCABULARY) >= 200


def test_import_is_light() -> None:
    code = (
        "import sys, sagellm_obs.workload\n"
        "heavy = [m for m in ('vllm', 'torch', 'polars', 'altair') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
