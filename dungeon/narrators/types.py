"""What a narrator is given and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class PastTurn:
    """A turn already played: the action (None for the opening), its narration and its mode."""

    action: str | None
    narration: str
    mode: str = "do"


# How the player's text is meant: ``do`` an action ("open the door" → "You
# open the door"), ``say`` words spoken aloud, ``story`` narration the player
# wrote that the narrator continues, ``continue`` no text (the narrator writes
# on).  (``see`` turns make only an image and never reach a narrator.)
MODES = ("do", "say", "story", "continue")


@dataclass(frozen=True)
class StoryCard:
    """A piece of the world the player wrote, given when one of its ``keys`` comes up."""

    title: str
    keys: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class NarrationContext:
    """Everything a narrator may use to write the next passage.

    ``action`` is None for the opening passage and for ``continue``; ``turn``
    is the number the new passage will have; ``seed`` makes offline
    narration repeatable.  The story memory: ``plot_essentials`` belong in
    every request; ``authors_note`` belongs near the end of the context,
    just before the action; ``cards`` are the story cards whose keys appear
    in the action or the recent turns; ``summary`` tells what happened
    before ``history``.  The engine has already fitted all of it to the
    context budget (``NARRATOR_CONTEXT_CHARS``).
    """

    genre: str
    style: str
    title: str
    seed: int
    turn: int
    action: str | None = None
    history: list[PastTurn] = field(default_factory=list)
    mode: str = "do"
    plot_essentials: str | None = None
    authors_note: str | None = None
    cards: list[StoryCard] = field(default_factory=list)
    summary: str | None = None


@dataclass(frozen=True)
class Narration:
    """A passage of story and the prompt for its scene image."""

    narration: str
    image_prompt: str


class Narrator(Protocol):
    """The interface a narrator plugin implements; raise NarratorUnavailable on failure.

    A narrator may also offer ``summarize(summary, turns) -> str``: the
    story so far, given the previous summary (or None) and the turns since;
    without it the engine summarises locally.
    """

    name: str

    def narrate(self, context: NarrationContext) -> Narration:
        """Write the next passage for ``context``, or raise NarratorUnavailable."""
