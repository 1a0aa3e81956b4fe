"""The OpenAI narrator: Chat Completions asked for a JSON answer.

It expects ``{"narration": "...", "image_prompt": "..."}`` back.  Transient
failures are retried with the same backoff as images; when it still fails,
the turn fails with 503 ``narrator_unavailable`` and nothing is saved.

The ``messages`` of a turn, in order, each left out when it would be empty:

1. system: the rules (genre, title, length, the JSON answer) and what this
   turn's mode asks of the narrator (``rules_text``);
2. system: ``Plot essentials: ...``, in every request;
3. system: ``The story so far: ...``, the running summary of what came before
   the recent turns;
4. system: ``World info:``, one ``- title: text`` line per story card given
   for this turn (the engine picks the cards whose keys came up);
5. the recent turns: a user message for the player's part, written as the
   mode wants it (``> You open the door``, ``> You say: "Hello."``, a
   passage of story as written, or ``[Continue the story. ...]``; none before
   the opening), then an assistant message with the narration, as JSON;
6. system: ``[Author's note: ...]``, just before the last message, where it
   weighs most on what comes next;
7. user: this turn, in the same shapes (a passage of story also asks to be
   continued; the opening is ``Begin the adventure.``).

The budget: every character of those messages except the rules, as
``context_chars`` counts them, stays within ``NARRATOR_CONTEXT_CHARS``
(6000 by default).  The engine fits the context to that budget already; the
labels and framing added here may go past it, so the narrator drops the
oldest turns first (down to the last two), then the story cards, then cuts
the summary, then the remaining turns, then the author's note, and last cuts
the plot essentials.  The player's action is never cut.

``summarize`` asks the same model for the running summary: the previous one
and the turns since go in, ``{"summary": "..."}`` comes back, at most
``SUMMARY_CHARS`` characters (cut there if the model wrote more).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
import tenacity

import dungeon

from ..catalog import GENRES
from ..errors import NarratorUnavailable
from .local import second_person, spoken, turn_kind
from .summary import SUMMARY_CHARS, cut
from .types import Narration, NarrationContext, PastTurn

log = logging.getLogger(__name__)

SYSTEM = (
    "You are the narrator of a {genre} text adventure titled \"{title}\". Write in the second "
    "person, present tense, 60 to 140 words per passage, vivid but concise, and always end "
    "with an open situation for the player. Never act for the player beyond their action. "
    "Answer with a JSON object with two string fields: \"narration\" (the passage) and "
    "\"image_prompt\" (one sentence describing the scene for an illustrator, no text in it)."
)
# What each kind of turn asks of the narrator, added to the rules.
MODE_RULES = {
    "opening": "This is the opening passage: set the scene, who the player is and what is at "
               "stake.",
    "do": "The player acts this turn, written as > You ...: tell what happens when they do it "
          "and what follows from it.",
    "say": "The player speaks this turn, written as > You say: \"...\": have them say it, then "
           "let whoever hears it react or answer.",
    "story": "The player wrote the latest passage of the story themselves. Take it as written, "
             "do not repeat or restate it, and continue it with the next beat.",
    "continue": "The player takes no action this turn: continue the story on your own with a "
                "new development that raises the tension, without deciding anything for the "
                "player.",
}
PLOT_ESSENTIALS = "Plot essentials: {}"
SUMMARY = "The story so far: {}"
WORLD_INFO = "World info:\n{}"
CARD = "- {}: {}"
AUTHORS_NOTE = "[Author's note: {}]"
OPENING_TURN = "Begin the adventure."
CONTINUE_TURN = "[Continue the story. The player takes no action this turn.]"
STORY_TURN = "{}\n\n[Continue the story from this passage, without repeating it.]"

CONTEXT_CHARS = 6000
# Turns kept when the budget is tight, before story cards and the summary give way.
KEEP_TURNS = 2
# A summary cut shorter than this is dropped instead.
MIN_SUMMARY_CHARS = 80

SUMMARY_RULES = (
    "You keep the running summary of a text adventure. Given the summary so far and the turns "
    "played since, write the new summary of the whole story: at most {chars} characters, in "
    "the second person and the present tense, plain prose. Keep names, goals, places, promises "
    "and open threads; drop the rest. Answer with a JSON object with one string field: "
    "\"summary\"."
)
RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}
_LEADING_YOU = re.compile(r"^you\s+", re.IGNORECASE)


class _Transient(Exception):
    """A failure worth another try."""


class _Permanent(Exception):
    """A failure that another try would repeat."""


@dungeon.hookimpl
def register_narrators(register, config):
    """Register the OpenAI narrator."""
    register(OpenAINarrator(config))


class OpenAINarrator:
    """Narrates with an OpenAI chat model."""

    name = "openai"

    def __init__(self, config: Mapping[str, Any], session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.api_key = config["OPENAI_API_KEY"]
        self.url = f"{config['OPENAI_BASE_URL'].rstrip('/')}/chat/completions"
        self.model = config["NARRATOR_MODEL"]
        self.reasoning_effort = config["NARRATOR_REASONING_EFFORT"]
        self.timeout = (config["IMAGE_CONNECT_TIMEOUT"], config["NARRATOR_TIMEOUT"])
        self.retries = config["NARRATOR_RETRIES"]
        self.budget = config.get("NARRATOR_CONTEXT_CHARS") or CONTEXT_CHARS
        self.session = session or requests.Session()
        self.sleep = sleep

    def narrate(self, context: NarrationContext) -> Narration:
        """Return the next passage, or raise NarratorUnavailable."""
        return self._complete(self.messages(context), _parse_narration, "narrator")

    def summarize(self, summary: str | None, turns: list[PastTurn]) -> str:
        """Return the story so far, from ``summary`` and ``turns``, or raise NarratorUnavailable."""
        if not turns:
            return summary or ""
        return self._complete(summary_messages(summary, turns), _parse_summary, "summary")

    def messages(self, context: NarrationContext) -> list[dict[str, str]]:
        """Return the chat messages for ``context``, within this narrator's budget."""
        return build_messages(fit_context(context, self.budget))

    def _complete(self, messages: list[dict[str, str]], parse: Callable[[str], Any],
                  purpose: str) -> Any:
        if not self.api_key:
            raise NarratorUnavailable("The openai narrator needs an OpenAI API key.")
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=tenacity.wait_exponential_jitter(multiplier=0.5, max=8, jitter=0.25),
            retry=tenacity.retry_if_exception_type(_Transient), sleep=self.sleep, reraise=True)
        try:
            return retrying(self._call, messages, parse)
        except (_Transient, _Permanent) as exc:
            log.warning("%s failed: %s", purpose, exc, extra={"model": self.model})
            raise NarratorUnavailable() from None

    def _call(self, messages: list[dict[str, str]], parse: Callable[[str], Any]) -> Any:
        body = {"model": self.model, "messages": messages,
                "response_format": {"type": "json_object"}}
        if self.reasoning_effort:
            body["reasoning_effort"] = self.reasoning_effort
        try:
            response = self.session.post(self.url, json=body, timeout=self.timeout,
                                         headers={"Authorization": f"Bearer {self.api_key}"})
        except requests.RequestException as exc:
            raise _Transient(f"connection failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            error = _error_text(response)
            if response.status_code in RETRY_STATUSES and "insufficient_quota" not in error:
                raise _Transient(error)
            raise _Permanent(error)
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Transient("the answer was not a chat completion") from None
        return parse(content)


def rules_text(context: NarrationContext) -> str:
    """Return the fixed rules of the first system message: the part no budget counts."""
    genre = GENRES.get(context.genre, {}).get("title", context.genre).lower()
    return f"{SYSTEM.format(genre=genre, title=context.title)} {MODE_RULES[turn_kind(context)]}"


def build_messages(context: NarrationContext) -> list[dict[str, str]]:
    """Return the chat messages for ``context`` as it is, in the order the module tells."""
    messages = [_system(rules_text(context))]
    if _text(context.plot_essentials):
        messages.append(_system(PLOT_ESSENTIALS.format(_text(context.plot_essentials))))
    if _text(context.summary):
        messages.append(_system(SUMMARY.format(_text(context.summary))))
    cards = [CARD.format(card.title.strip(), card.text.strip())
             for card in context.cards if card.title.strip() or card.text.strip()]
    if cards:
        messages.append(_system(WORLD_INFO.format("\n".join(cards))))
    for index, past in enumerate(context.history):
        played = _past_turn(past, first=index == 0)
        if played:
            messages.append({"role": "user", "content": played})
        messages.append({"role": "assistant", "content": json.dumps(
            {"narration": past.narration}, ensure_ascii=False)})
    if _text(context.authors_note):
        messages.append(_system(AUTHORS_NOTE.format(_text(context.authors_note))))
    messages.append({"role": "user", "content": this_turn(context)})
    return messages


def context_chars(context: NarrationContext) -> int:
    """Return the characters ``context`` puts in the messages besides the rules.

    That is what the budget holds: for any context, the request's contents
    add up to ``len(rules_text(context)) + context_chars(context)``.
    """
    return sum(len(message["content"]) for message in build_messages(context)[1:])


def fit_context(context: NarrationContext, budget: int) -> NarrationContext:
    """Return ``context`` with pieces dropped or cut until ``context_chars`` is within budget."""
    while (over := context_chars(context) - budget) > 0:
        if len(context.history) > KEEP_TURNS:
            context = dataclasses.replace(context, history=context.history[1:])
        elif context.cards:
            context = dataclasses.replace(context, cards=context.cards[:-1])
        elif _text(context.summary):
            room = len(_text(context.summary)) - over
            summary = cut(_text(context.summary), room) if room >= MIN_SUMMARY_CHARS else None
            context = dataclasses.replace(context, summary=summary)
        elif context.history:
            context = dataclasses.replace(context, history=context.history[1:])
        elif _text(context.authors_note):
            context = dataclasses.replace(context, authors_note=None)
        elif _text(context.plot_essentials):
            room = len(_text(context.plot_essentials)) - over
            essentials = cut(_text(context.plot_essentials), room) if room > 0 else None
            context = dataclasses.replace(context, plot_essentials=essentials)
        else:
            break  # the action alone is over budget, and it is never cut
    return context


def this_turn(context: NarrationContext) -> str:
    """Return the final user message: this turn's action, written as its mode wants."""
    kind = turn_kind(context)
    if kind == "opening":
        return OPENING_TURN
    if kind == "story":
        return STORY_TURN.format((context.action or "").strip())
    return _played(kind, context.action)


def summary_messages(summary: str | None, turns: list[PastTurn]) -> list[dict[str, str]]:
    """Return the chat messages that ask for the running summary."""
    transcript = []
    for index, past in enumerate(turns):
        played = _past_turn(past, first=index == 0 and not summary)
        transcript.append(f"{played}\n{past.narration.strip()}" if played
                          else past.narration.strip())
    told = _text(summary) or "(none yet: the story has just begun)"
    return [_system(SUMMARY_RULES.format(chars=SUMMARY_CHARS)),
            {"role": "user", "content": f"Summary so far: {told}\n\nTurns since:\n\n"
                                        + "\n\n".join(transcript)}]


def _past_turn(past: PastTurn, first: bool) -> str:
    """Return the player's part of a past turn; "" for the opening."""
    mode = getattr(past, "mode", None)
    if past.action is None:
        # Without a mode, a turn with no action is the opening when it comes first.
        return "" if (mode != "continue" and first) else CONTINUE_TURN
    kind = mode if mode in ("say", "story", "continue") else "do"
    return _played(kind, past.action)


def _played(kind: str, action: str | None) -> str:
    if kind == "continue" or action is None:
        return CONTINUE_TURN
    if kind == "say":
        return f'> You say: "{spoken(action)}"'
    if kind == "story":
        return action.strip()
    return f"> You {_LEADING_YOU.sub('', second_person(action))}"


def _system(content: str) -> dict[str, str]:
    return {"role": "system", "content": content}


def _text(value: str | None) -> str:
    return (value or "").strip()


def _error_text(response: requests.Response) -> str:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    return (f"HTTP {response.status_code} {error.get('code') or ''} "
            f"{error.get('message') or ''} request_id={response.headers.get('x-request-id')}")


def _json_object(content: Any) -> dict[str, Any]:
    try:
        answer = json.loads(content)
    except (TypeError, ValueError):
        raise _Transient("the model's answer was not JSON") from None
    if not isinstance(answer, dict):
        raise _Transient("the model's answer was not a JSON object")
    return answer


def _parse_narration(content: Any) -> Narration:
    answer = _json_object(content)
    narration, image_prompt = answer.get("narration"), answer.get("image_prompt") or ""
    if not isinstance(narration, str) or not narration.strip():
        raise _Transient("the model's answer has no narration")
    if not isinstance(image_prompt, str):
        image_prompt = ""
    return Narration(narration.strip(), image_prompt.strip() or narration.strip()[:400])


def _parse_summary(content: Any) -> str:
    summary = _json_object(content).get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise _Transient("the model's answer has no summary")
    return cut(" ".join(summary.split()), SUMMARY_CHARS)
