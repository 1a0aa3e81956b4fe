"""What a narrator is given and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class PastTurn:
    """A turn already played: the player's action (None for the opening) and its narration."""

    action: str | None
    narration: str


@dataclass(frozen=True)
class NarrationContext:
    """Everything a narrator may use to write the next passage.

    ``action`` is None for the opening passage; ``turn`` is the number the
    new passage will have; ``seed`` makes offline narration repeatable.
    """

    genre: str
    style: str
    title: str
    seed: int
    turn: int
    action: str | None = None
    history: list[PastTurn] = field(default_factory=list)


@dataclass(frozen=True)
class Narration:
    """A passage of story and the prompt for its scene image."""

    narration: str
    image_prompt: str


class Narrator(Protocol):
    """The interface a narrator plugin implements; raise NarratorUnavailable on failure."""

    name: str

    def narrate(self, context: NarrationContext) -> Narration:
        """Write the next passage for ``context``, or raise NarratorUnavailable."""
