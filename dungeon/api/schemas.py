"""The API's contract: pydantic models that validate requests and shape responses.

The OpenAPI document (``/api/openapi.json``) is generated from these same
models, so what is documented is what is checked.  Rules a JSON Schema
cannot say (no control characters, not blank once trimmed) are validators
on the models.  Times are ISO 8601 in UTC everywhere (``2026-12-01T09:00:00Z``).
"""

from __future__ import annotations

import sys
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)

from .. import catalog
from ..images.types import ASPECTS, QUALITIES
from ..sessions.idempotency import KEY


def has_control_characters(value: str, allow_newlines: bool = False) -> bool:
    """Return True if ``value`` holds control, invisible formatting or lone surrogate characters.

    Lone surrogates (category Cs) arrive through JSON escapes like ``\\ud800``
    and cannot be stored: they are refused here rather than failing a write.
    """
    allowed = "\n\t" if allow_newlines else ""
    return any(unicodedata.category(ch) in REFUSED_CATEGORIES and ch not in allowed
               for ch in value)


def _refused_ranges() -> list[tuple[int, int]]:
    """Return the code point ranges of control, format and surrogate characters."""
    found: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)) in REFUSED_CATEGORIES:
            if found and found[-1][1] == code - 1:
                found[-1] = (found[-1][0], code)
            else:
                found.append((code, code))
    return found


def _text_pattern(allowed: str = "") -> str:
    """Return a pattern that says what ``has_control_characters`` checks, and "not blank".

    The pattern puts the rule in the published schema, so clients and
    generated tests know it; the validator below stays the authority.
    The characters are written as themselves, which JSON escapes.
    """
    # Lone surrogates cannot be written in a UTF-8 document; the validator
    # still refuses them when a JSON escape brings one in.
    holes = {ord(ch) for ch in allowed}
    spans = [part for a, b in _REFUSED if unicodedata.category(chr(a)) != "Cs"
             for part in _split((a, b), holes)]
    refused = "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in spans)
    return f"^[^{refused}]*[^{refused}\\s][^{refused}]*$"


def _split(span: tuple[int, int], holes: set[int]) -> list[tuple[int, int]]:
    parts, start = [], span[0]
    for code in range(span[0], span[1] + 1):
        if code in holes:
            if start < code:
                parts.append((start, code - 1))
            start = code + 1
    if start <= span[1]:
        parts.append((start, span[1]))
    return parts


REFUSED_CATEGORIES = ("Cc", "Cf", "Cs")
_REFUSED = _refused_ranges()
SINGLE_LINE = _text_pattern()
MULTILINE = _text_pattern("\t\n")


def _single_line(value: str) -> str:
    if has_control_characters(value):
        raise ValueError("must not contain control characters")
    return _not_blank(value)


def _multiline(value: str) -> str:
    if has_control_characters(value, allow_newlines=True):
        raise ValueError("must not contain control characters")
    return _not_blank(value)


def _not_blank(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _text(max_length: int, multiline: bool = False):
    """A player's text: a string of at most ``max_length`` characters, trimmed, never blank."""
    return Annotated[str, StringConstraints(max_length=max_length),
                     Field(json_schema_extra={"pattern": MULTILINE if multiline
                                              else SINGLE_LINE}),
                     AfterValidator(_multiline if multiline else _single_line)]


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# A moment in time as the API writes it: ISO 8601, UTC, "Z".
Timestamp = Annotated[datetime, PlainSerializer(_iso, return_type=str),
                      Field(json_schema_extra={"format": "date-time"})]
Genre = Literal[tuple(catalog.GENRES)]  # type: ignore[valid-type]
Style = Literal[tuple(catalog.STYLES)]  # type: ignore[valid-type]
Aspect = Literal[tuple(ASPECTS)]  # type: ignore[valid-type]
Quality = Literal[tuple(QUALITIES)]  # type: ignore[valid-type]


class Strict(BaseModel):
    """A request body or query: unknown fields are refused, so a misspelt one is never ignored."""

    model_config = ConfigDict(extra="forbid")


# --- requests -----------------------------------------------------------------------

ImageMode = Literal["every_turn", "on_demand", "off"]
Mode = Literal["do", "say", "story", "continue", "see"]
PLOT_ESSENTIALS = Field(None, description="Always in the narrator's context: what the story "
                                          "must keep (at most 1000 characters).")
AUTHORS_NOTE = Field(None, description="Style or direction for the narrator, placed near the end "
                                       "of its context (at most 300 characters).")
IMAGE_MODE = Field(None, description="`every_turn` (default): each turn gets a picture; "
                                     "`on_demand`: only `see` turns and explicit requests; "
                                     "`off`: none (a turn shows `image: null`).")


class NewGame(Strict):
    """Start an adventure in a genre and an art style, optionally with its opening passage."""

    genre: Genre
    style: Style
    title: _text(80) | None = Field(None, description="Shown in the saved-games list.")
    custom_prologue: _text(4000, multiline=True) | None = Field(
        None, description="The opening passage, word for word; without it the narrator writes "
                          "one.")
    plot_essentials: _text(1000, multiline=True) | None = PLOT_ESSENTIALS
    authors_note: _text(300, multiline=True) | None = AUTHORS_NOTE
    image_mode: ImageMode | None = IMAGE_MODE


class GameUpdate(Strict):
    """Change a game's title, story memory or image mode; a field left out is kept."""

    title: _text(80) | None = None
    plot_essentials: _text(1000, multiline=True) | None = PLOT_ESSENTIALS
    authors_note: _text(300, multiline=True) | None = AUTHORS_NOTE
    image_mode: ImageMode | None = IMAGE_MODE
    clear: list[Literal["plot_essentials", "authors_note"]] = Field(
        default_factory=list, max_length=2, description="Memory fields to empty.")


class Action(Strict):
    """What the player does next, in their own words, and how it is meant.

    ``do`` (default): an action ("open the door" is played as "You open the
    door"); ``say``: words spoken aloud; ``story``: narration the player
    writes, which the narrator continues; ``continue``: no text, the
    narrator writes on; ``see``: no narration, a picture of what the text
    describes (or of the current scene when it is empty), as a turn of its own.
    """

    # The rule below, published: clients and generated tests see it too.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["action"], "properties": {
            "action": {"type": "string"}, "mode": {"enum": ["do", "say", "story"]}}},
        {"required": ["mode"], "properties": {"mode": {"const": "see"}}},
        {"required": ["mode"], "properties": {"mode": {"const": "continue"},
                                              "action": {"type": "null"}}}]})

    action: _text(500) | None = None
    mode: Mode = "do"

    @model_validator(mode="after")
    def _text_when_the_mode_needs_it(self):
        if self.action is None and self.mode in ("do", "say", "story"):
            raise ValueError(f"action: is required in mode {self.mode}")
        if self.action is not None and self.mode == "continue":
            raise ValueError("action: must be left out in mode continue")
        return self


class CardBody(Strict):
    """A story card: given to the narrator when one of its keys appears in play."""

    title: _text(80)
    keys: list[_text(40)] = Field(min_length=1, max_length=20,
                                  description="Trigger words or phrases (any case).")
    text: _text(1000, multiline=True)


class Card(BaseModel):
    """A story card."""

    id: str
    title: str
    keys: list[str]
    text: str
    created_at: Timestamp
    updated_at: Timestamp


class CardAnswer(BaseModel):
    """The card as it now is."""

    card: Card


class Cards(BaseModel):
    """A game's story cards, oldest first."""

    cards: list[Card]


class ImageAsk(Strict):
    """A picture of a prompt, in a genre and an art style."""

    prompt: _text(4000, multiline=True)
    genre: Genre
    style: Style
    aspect: Aspect | None = None
    quality: Quality | None = None


class GamePath(BaseModel):
    """A game, by id."""

    session_id: str = Field(description="The game's id, as `game.id` gives it.")


class TurnPath(GamePath):
    """A turn of a game, by number (0 is the opening)."""

    n: int = Field(ge=0, description="The turn's number; 0 is the opening.")


class CardPath(GamePath):
    """A story card of a game."""

    card_id: str


class ImagePath(BaseModel):
    """An image: a turn's image slot (``s_…``) or a stored image's content address."""

    image_id: str


class Waiting(Strict):
    """``?wait=image`` holds the answer until the image is made (within the image deadline)."""

    wait: Literal["image"] | None = Field(
        None, description="`image`: answer once the turn's image is made, not at once.")


class GameList(Strict):
    """A page of the player's games."""

    limit: int = Field(20, ge=1, le=100, description="Games per page.")
    cursor: str | None = Field(None, max_length=512, pattern=r"^[A-Za-z0-9_-]+$",
                               description="`next_cursor` of the previous page (opaque).")


class TurnList(Strict):
    """A page of a game's turns, going back in time."""

    before: int | None = Field(None, ge=0, le=10**9,
                               description="Only turns before this number (default: the latest).")
    limit: int = Field(20, ge=1, le=100, description="Turns per page.")


class IdempotencyHeader(BaseModel):
    """An ``Idempotency-Key`` makes a retried write apply once; the retry gets what it committed."""

    idempotency_key: str | None = Field(
        None, alias="Idempotency-Key", pattern=KEY.pattern,
        description="Any 1-128 letters, digits or `. _ : -`, new for each write; reuse it to "
                    "retry that write. Kept for `DUNGEON_IDEMPOTENCY_HOURS`.")


# --- responses ------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    """What went wrong: a stable code for programs, a message for people."""

    code: str = Field(examples=["session_not_found"])
    message: str
    details: dict[str, Any] | None = Field(
        None, description="Where useful: `fields` names each invalid field or query "
                          "parameter with its reason.")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer has this one shape."""

    error: ErrorDetail
    request_id: str | None = Field(description="Also in the `X-Request-ID` header.")


ImageStatus = Literal["pending", "ready", "failed"]


class Image(BaseModel):
    """An image, the same object everywhere: a turn's scene or a requested picture."""

    id: str = Field(description="Slot id (`s_…`) of a turn's image, or the content address of a "
                                "stored image.")
    url: str = Field(description="Where to fetch it: 202 while pending, then the bytes.")
    status: ImageStatus
    provider: str | None = Field(description="Who made it; `placeholder` when none could.")
    placeholder: bool = Field(description="True when the picture is the genre's placeholder; "
                                          "a turn's can be asked for again.")


class Attempt(BaseModel):
    """One try of one provider on the way to an image."""

    provider: str
    outcome: str
    ms: float
    status: int | None
    error_code: str | None
    model: str | None


class MadeImage(Image):
    """An image made for ``POST /api/images``, with how it was made."""

    content_type: str
    model: str | None
    revised_prompt: str | None
    attempts: list[Attempt]
    prompt_refused: list[str]


class ImageAnswer(BaseModel):
    """The image made."""

    image: MadeImage


class PendingImage(BaseModel):
    """An image on its way: ask again after ``Retry-After`` seconds."""

    image: Image


class Alternative(BaseModel):
    """One narration of a turn, with its own image."""

    narration: str
    image: Image | None
    created_at: Timestamp


class Turn(BaseModel):
    """One turn: the player's action (none for the opening) and the story's answer."""

    n: int
    action: str | None
    mode: Mode = Field(description="How the action was meant.")
    narration: str = Field(description="The chosen alternative's text, exactly as written "
                                       "(a `see` turn's caption).")
    image: Image | None
    created_at: Timestamp
    alternatives: list[Alternative] = Field(
        description="Every narration of this turn, the first one first, once it was retried "
                    "(empty before: `narration` is its one). `narration` and `image` are those "
                    "of `chosen`.")
    chosen: int


class TurnEdit(Strict):
    """A past turn's text, changed in place; a field left out is kept; the image stays."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["action"], "properties": {"action": {"type": "string"}}},
        {"required": ["narration"], "properties": {"narration": {"type": "string"}}}]})

    action: _text(500) | None = None
    narration: _text(4000, multiline=True) | None = None

    @model_validator(mode="after")
    def _something_to_change(self):
        if self.action is None and self.narration is None:
            raise ValueError("narration: give the action, the narration or both")
        return self


class Choice(Strict):
    """Which alternative a turn shows."""

    index: int = Field(ge=0, le=1000)


class Game(BaseModel):
    """A saved game."""

    id: str
    title: str
    genre: str
    style: str
    status: str
    turn_count: int
    version: int
    created_at: Timestamp
    updated_at: Timestamp
    expires_at: Timestamp | None = Field(description="When it is deleted unless played; "
                                                     "null: never.")
    plot_essentials: str | None
    authors_note: str | None
    image_mode: ImageMode


class GameOnly(BaseModel):
    """The game as it now is."""

    game: Game


class GameCreated(BaseModel):
    """The new game and its opening turn."""

    game: Game
    turns: list[Turn]


class GameLoaded(BaseModel):
    """A game and its most recent turns, oldest first."""

    game: Game
    turns: list[Turn]


class TurnPlayed(BaseModel):
    """The game after the turn, and the turn."""

    game: Game
    turn: Turn


class TurnOnly(BaseModel):
    """The turn as it now is."""

    turn: Turn


class Games(BaseModel):
    """A page of games, most recently played first."""

    games: list[Game]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at "
                                                "the end.")


class Turns(BaseModel):
    """A page of turns, oldest first."""

    turns: list[Turn]


class Guest(BaseModel):
    """A new guest and its bearer token."""

    token: str
    token_type: Literal["Bearer"]
    user_id: str
    expires_at: Timestamp


class GenreEntry(BaseModel):
    """A genre a game can have."""

    id: str
    title: str
    blurb: str


class StyleEntry(BaseModel):
    """An art style a game's pictures can have."""

    id: str
    title: str


class Catalog(BaseModel):
    """The genres and art styles to choose from."""

    genres: list[GenreEntry]
    styles: list[StyleEntry]


class Health(BaseModel):
    """The process answers."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Each dependency's state; 503 when the store, without which nothing works, is down."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, Any]


# --- auth -----------------------------------------------------------------------------

class LinkCode(BaseModel):
    """A one-use code that signs another device in as the same user, for ten minutes."""

    code: str = Field(pattern=r"^[0-9A-HJKMNP-TV-Z]{8}$", examples=["7K3M9QXD"],
                      description="8 characters of Crockford's base32 (no I, L, O, U). Show it "
                                  "to the player; it works once.")
    expires_at: Timestamp


class RedeemLink(Strict):
    """A link code made on the signed-in device, as the player typed it."""

    # The same rule as dungeon.users.CODE_INPUT: 8 letters or digits, in either
    # case, with dashes or spaces anywhere.
    code: str = Field(max_length=32, pattern=r"^[ -]*(?:[0-9A-Za-z][ -]*){8}$",
                      examples=["7K3M-9QXD"],
                      description="The code from `POST /api/auth/link`; case, dashes and "
                                  "spaces do not matter.")


class LinkedToken(Guest):
    """A bearer token on this device for the user who made the link code: the same saved games."""


class Me(BaseModel):
    """The signed-in user and their settings."""

    user_id: str
    safety_level: Literal["strict", "moderate", "mature"] = Field(
        description="What the story may hold: strict refuses the most, mature the least "
                    "(never sexual content with minors). Also sets how strictly pictures are "
                    "moderated.")
    safety_level_chosen: bool = Field(description="False while the service's default applies.")


class MeUpdate(Strict):
    """Settings the user changes."""

    safety_level: Literal["strict", "moderate", "mature"]
