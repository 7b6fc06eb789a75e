"""The ``chat_sessions`` workload: multi-turn conversations that re-send their history.

``sessions`` conversations of ``turns`` turns each. Turn ``k`` (0-based) of a session sends, as
chat ``messages``, the session's system prompt, then the ``k`` previous user/assistant exchanges,
then the new user message; so turn ``k``'s messages start with turn ``k - 1``'s messages, and a
prefix cache can reuse everything but the last exchange. The assistant replies are synthetic
(``assistant_tokens`` long, ``max_tokens`` by default): the model's real outputs are not fed back,
which keeps the workload fixed before the run.

Sessions interleave: at each step a seeded random choice picks one of the sessions that still has
turns, and that session's next turn comes next. Turns of one session therefore stay in order, and
since arrival times never decrease along the list, a later turn's ``at`` is never before an earlier
one's. ``WorkItem.session_id`` (and ``family``) names the session, so a runner can also wait for
turn ``k - 1`` to complete before sending turn ``k``.

Prompts grow with the turn number: the last turn sends about
``system_tokens + turns * user_tokens + (turns - 1) * assistant_tokens`` tokens (plus the chat
template), which must fit the model's context window.
"""

from __future__ import annotations

import math
import random

from sagellm_obs.protocol import ChatMessage
from sagellm_obs.workload.arrivals import ArrivalLike, schedule
from sagellm_obs.workload.item import WorkItem, check_positive, make_request
from sagellm_obs.workload.text import TextGenerator

__all__ = ["chat_sessions", "session_name"]

KIND = "chat_sessions"


def session_name(session: int) -> str:
    """Name of session number ``session`` (``"session-000"``)."""
    return f"session-{session:03d}"


def _session_messages(
    seed: int,
    session: int,
    turns: int,
    system_tokens: int,
    user_tokens: int,
    assistant_tokens: int,
) -> list[list[ChatMessage]]:
    """The messages each turn of one session sends (depends only on the arguments)."""
    gen = TextGenerator(f"{KIND}:{seed}:session:{session}")
    history = [ChatMessage(role="system", content=gen.text(system_tokens))]
    per_turn: list[list[ChatMessage]] = []
    for k in range(turns):
        if k > 0:
            history.append(ChatMessage(role="assistant", content=gen.text(assistant_tokens)))
        history.append(ChatMessage(role="user", content=gen.text(user_tokens)))
        per_turn.append(list(history))
    return per_turn


def chat_sessions(
    *,
    seed: int = 0,
    n_requests: int = 32,
    max_tokens: int = 32,
    turns: int = 4,
    sessions: int | None = None,
    system_tokens: int = 200,
    user_tokens: int = 40,
    assistant_tokens: int | None = None,
    arrival: ArrivalLike = None,
    duration: float | None = None,
    stream: bool = False,
    temperature: float | None = 0.0,
) -> list[WorkItem]:
    """Interleaved multi-turn chat sessions; each turn re-sends the whole history.

    Args:
        seed: Seed of texts, interleaving and (string ``arrival``) Poisson gaps.
        n_requests: Number of requests (> 0). When ``sessions * turns`` is larger, the
            interleaved sequence is cut after ``n_requests`` turns (some sessions end early).
        max_tokens: Output tokens per request (> 0, exact thanks to ``ignore_eos``).
        turns: Turns per session (> 0).
        sessions: Number of sessions; ``ceil(n_requests / turns)`` by default.
        system_tokens: Approximate system prompt length in tokens (> 0).
        user_tokens: Approximate length of each user message in tokens (> 0).
        assistant_tokens: Approximate length of each synthetic assistant reply; ``max_tokens``
            by default.
        arrival: Arrival pattern, pattern string (``"poisson:20"``) or ``None`` for a burst.
        duration: When given, drop the requests scheduled after this many seconds.
        stream: Whether requests stream their output.
        temperature: Sampling temperature (greedy by default).

    Returns:
        The items, in send order; ``metadata`` also carries ``session_id`` and ``turn``.

    Raises:
        ValueError: A count or length is not a positive integer, ``sessions * turns`` is smaller
            than ``n_requests``, or a bad ``arrival``.
    """
    if sessions is None:
        check_positive("turns", turns)
        check_positive("n_requests", n_requests)
        sessions = math.ceil(n_requests / turns)
    if assistant_tokens is None:
        assistant_tokens = max_tokens
    for name, value in (
        ("n_requests", n_requests),
        ("max_tokens", max_tokens),
        ("turns", turns),
        ("sessions", sessions),
        ("system_tokens", system_tokens),
        ("user_tokens", user_tokens),
        ("assistant_tokens", assistant_tokens),
    ):
        check_positive(name, value)
    if sessions * turns < n_requests:
        raise ValueError(
            f"sessions * turns ({sessions} * {turns}) must be >= n_requests ({n_requests})"
        )
    rng = random.Random(f"{KIND}:{seed}:order")
    next_turn = [0] * sessions
    active = list(range(sessions))
    items: list[WorkItem] = []
    cache: dict[int, list[list[ChatMessage]]] = {}
    while len(items) < n_requests:
        s = active[rng.randrange(len(active))]
        k = next_turn[s]
        next_turn[s] += 1
        if next_turn[s] == turns:
            active.remove(s)
        if s not in cache:
            cache[s] = _session_messages(
                seed, s, turns, system_tokens, user_tokens, assistant_tokens
            )
        name = session_name(s)
        request = make_request(
            KIND,
            seed,
            len(items),
            max_tokens=max_tokens,
            messages=cache[s][k],
            family=name,
            stream=stream,
            temperature=temperature,
            metadata={"session_id": name, "turn": k},
        )
        items.append(WorkItem(request=request, session_id=name, family=name, kind=KIND))
    return schedule(items, arrival, seed=seed, duration=duration)
