"""The local story summary: extractive, deterministic, and never longer than a limit.

A long game outgrows the turns a narrator is shown, so the engine keeps a
running summary of what came before them.  This one needs no model: it keeps
the previous summary's sentences and adds the first sentence of each new
passage (where a passage says what the action led to).  Past ``SUMMARY_CHARS``
it keeps the first sentence, how the story began, and then as many of the
most recent sentences as fit: the middle of a long story fades first.  The
same summary and turns always give the same text.
"""

from __future__ import annotations

import re

from .types import PastTurn

SUMMARY_CHARS = 600
# No single sentence may take more than this share of the summary.
SENTENCE_CHARS = SUMMARY_CHARS // 3
# A "sentence" shorter than this many words (a title line) says too little to keep.
MIN_WORDS = 3

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"”’')\]])\s+")


def summarize(summary: str | None, turns: list[PastTurn], limit: int = SUMMARY_CHARS) -> str:
    """Return the story so far: ``summary`` (or None) brought up to date with ``turns``."""
    kept = sentences(summary or "")
    for turn in turns:
        first = first_sentence(turn.narration)
        if first and (not kept or kept[-1] != first):
            kept.append(first)
    return fit_sentences(kept, limit)


def sentences(text: str) -> list[str]:
    """Return the sentences of ``text``, whitespace normalised, empty ones dropped."""
    text = " ".join(text.split())
    return [part.strip() for part in _SENTENCE_END.split(text) if part.strip()]


def first_sentence(text: str, min_words: int = MIN_WORDS) -> str:
    """Return the first sentence of ``text`` with at least ``min_words`` words, cut short."""
    parts = sentences(text)
    chosen = next((part for part in parts if len(part.split()) >= min_words),
                  parts[0] if parts else "")
    return cut(chosen, SENTENCE_CHARS)


def fit_sentences(parts: list[str], limit: int) -> str:
    """Join ``parts`` within ``limit`` characters: the first one, then the latest that fit."""
    whole = " ".join(parts)
    if len(whole) <= limit or not parts:
        return whole
    head = cut(parts[0], limit)
    tail: list[str] = []
    room = limit - len(head)
    for part in reversed(parts[1:]):
        if len(part) + 1 > room:
            break
        tail.insert(0, part)
        room -= len(part) + 1
    return " ".join([head, *tail])


def cut(text: str, limit: int) -> str:
    """Return ``text`` within ``limit`` characters, cut at a word and marked with an ellipsis."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:limit]
    shortened = text[:limit - 1]
    if " " in shortened:
        shortened = shortened.rsplit(" ", 1)[0]
    return shortened.rstrip(" ,;:.") + "…"
