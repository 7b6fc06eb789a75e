"""Deterministic filler text without a model: seeded words and sentences of a target length.

Workloads need prompts of a known approximate size, not meaningful prose. :class:`TextGenerator`
draws words from a built-in vocabulary (:data:`VOCABULARY`: about 300 common English and code
words, chosen among those the tiny model's tokenizer keeps whole) with a seeded
:class:`random.Random` and groups them into capitalised sentences ending with a full stop. No file
is ever read.

Token counts are estimates: we assume :data:`TOKENS_PER_WORD` = 1.3 tokens per whitespace-separated
word for the tiny model's byte-level BPE (2048-entry vocabulary). Measured with that tokenizer on
generated text the ratio is 1.31, capitals and full stops included (400 requested tokens gave 404
on average). Other tokenizers give other counts, so read every ``*_tokens`` argument of the
workload generators as "about this many tokens". Word counts, on the other hand, are exact:
:meth:`TextGenerator.text` returns exactly :func:`words_for_tokens` words.
"""

from __future__ import annotations

import random

__all__ = [
    "TOKENS_PER_WORD",
    "VOCABULARY",
    "TextGenerator",
    "count_words",
    "estimate_tokens",
    "words_for_tokens",
]

TOKENS_PER_WORD = 1.3
"""Assumed tokens per word of generated text for the tiny model's BPE (an estimate)."""

_SENTENCE_WORDS = (6, 14)
"""Inclusive bounds of the number of words per generated sentence."""

_WORDS = """
the and of for with from that then when while after before until during without under into
through because although once every some more little small long first second next old new good
fair true false simple useful careful quiet steady gentle bright heavy warm cold grey pale
distant narrow strange ancient noisy fragile honest patient curious tired broken shared planned
recorded measured tested counted delayed finished ignored remembered discovered described
explained compared translated repaired rebuilt painted celebrated agreed followed carried grew
came went made said could would does were was had are is be do go add start end open sort train
record measure summarize export restart continue return keep time night morning evening noon
week year winter weather rain river sun sky water forest valley coast harbour city street market
garden bridge station museum library kitchen corner fence window lights lighthouse keeper
captain ship engineer student author librarian baker neighbour grandmother traveller children
team group committee council orchestra festival game story letter melody radio bread flour cake
recipe kettle map guide schedule review question paragraph sentence course research experiment
prototype pilot discussion practice patience sense numbers results records reports request
requests prompts token tokens batch item queue queues workers engine engines cache caches buffer
buffers blocks frames span trace metric metrics signal latency throughput budget limit size
value key name names path line lines log scheduler cluster archive measurement percent total
mean count decode self def int str dict list len else python pytest git grep src head encoding
elapsed enumerate field object result assistant helpful rarely abandoned forgotten stray cat
pile questioned telling unfinished rules noise unread shift spite sleep boiling plum price
faster northern quarterly heavier nobody surprising bags mornings things grow they built meadow
machine timed operation attributes tracing capital per short last get read load send stop
village answer items worker block
"""

VOCABULARY: tuple[str, ...] = tuple(_WORDS.split())
"""Built-in word list (order matters: it is part of what a seed reproduces)."""


def words_for_tokens(n_tokens: int) -> int:
    """Number of words expected to tokenize to about ``n_tokens`` tokens.

    Args:
        n_tokens: Target token count (>= 0).

    Returns:
        ``round(n_tokens / TOKENS_PER_WORD)``, at least 1 when ``n_tokens > 0``.

    Raises:
        ValueError: ``n_tokens`` is negative.
    """
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens}")
    if n_tokens == 0:
        return 0
    return max(1, round(n_tokens / TOKENS_PER_WORD))


def count_words(text: str) -> int:
    """Number of whitespace-separated words in ``text``."""
    return len(text.split())


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text``: ``round(words * TOKENS_PER_WORD)``."""
    return round(count_words(text) * TOKENS_PER_WORD)


class TextGenerator:
    """Seeded generator of filler words and sentences.

    Same seed (or same ``random.Random`` state) gives the same text, on every platform and Python
    version that keeps ``random.Random``'s documented reproducibility (``random.choice`` and
    ``randint`` are stable across 3.x for a given seed).

    Example:
        >>> gen = TextGenerator(7)
        >>> text = gen.text(13)
        >>> count_words(text) == words_for_tokens(13)
        True
    """

    def __init__(self, seed: int | str | random.Random) -> None:
        """Creates the generator.

        Args:
            seed: An ``int``/``str`` seed, or an existing ``random.Random`` to draw from (shared,
                not copied).
        """
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)

    def words(self, n: int) -> list[str]:
        """Draws ``n`` vocabulary words (lower case, no punctuation).

        Args:
            n: Number of words (>= 0).

        Returns:
            The words.
        """
        return [self.rng.choice(VOCABULARY) for _ in range(n)]

    def sentences(self, n_words: int) -> str:
        """Exactly ``n_words`` words grouped into capitalised sentences ending with ``"."``.

        Args:
            n_words: Number of words (>= 0); ``0`` gives ``""``.

        Returns:
            The text, sentences separated by single spaces.
        """
        words = self.words(n_words)
        out: list[str] = []
        i = 0
        while i < len(words):
            size = self.rng.randint(*_SENTENCE_WORDS)
            chunk = words[i : i + size]
            chunk[0] = chunk[0].capitalize()
            chunk[-1] += "."
            out.append(" ".join(chunk))
            i += size
        return " ".join(out)

    def text(self, n_tokens: int) -> str:
        """Sentences of about ``n_tokens`` tokens (exactly ``words_for_tokens(n_tokens)`` words).

        Args:
            n_tokens: Target token count (>= 0).

        Returns:
            The text.
        """
        return self.sentences(words_for_tokens(n_tokens))
