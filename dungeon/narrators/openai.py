"""The OpenAI narrator: Chat Completions asked for a JSON answer.

It sends the genre, the title and the recent turns as context, and expects
``{"narration": "...", "image_prompt": "..."}`` back.  Transient failures are
retried with the same backoff as images; when it still fails, the turn fails
with 503 ``narrator_unavailable`` and nothing is saved.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
import tenacity

import dungeon

from ..catalog import GENRES
from ..errors import NarratorUnavailable
from .types import Narration, NarrationContext

log = logging.getLogger(__name__)

SYSTEM = (
    "You are the narrator of a {genre} text adventure titled \"{title}\". Write in the second "
    "person, present tense, 60 to 140 words per passage, vivid but concise, and always end "
    "with an open situation for the player. Never act for the player beyond their action. "
    "Answer with a JSON object with two string fields: \"narration\" (the passage) and "
    "\"image_prompt\" (one sentence describing the scene for an illustrator, no text in it)."
)
RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}


class _Transient(Exception):
    """A failure worth another try."""


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
        self.session = session or requests.Session()
        self.sleep = sleep

    def narrate(self, context: NarrationContext) -> Narration:
        """Return the next passage, or raise NarratorUnavailable."""
        if not self.api_key:
            raise NarratorUnavailable("The openai narrator needs an OpenAI API key.")
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=tenacity.wait_exponential_jitter(multiplier=0.5, max=8, jitter=0.25),
            retry=tenacity.retry_if_exception_type(_Transient), sleep=self.sleep, reraise=True)
        try:
            return retrying(self._call, self.messages(context))
        except (_Transient, _Permanent) as exc:
            log.warning("narrator failed: %s", exc, extra={"model": self.model})
            raise NarratorUnavailable() from None

    def messages(self, context: NarrationContext) -> list[dict[str, str]]:
        """Return the chat messages for ``context``: system, past turns, the new action."""
        genre = GENRES.get(context.genre, {}).get("title", context.genre).lower()
        messages = [{"role": "system", "content": SYSTEM.format(genre=genre,
                                                                title=context.title)}]
        for past in context.history:
            if past.action is not None:
                messages.append({"role": "user", "content": past.action})
            messages.append({"role": "assistant", "content": json.dumps(
                {"narration": past.narration}, ensure_ascii=False)})
        messages.append({"role": "user", "content": context.action or "Begin the adventure."})
        return messages

    def _call(self, messages: list[dict[str, str]]) -> Narration:
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
        return _parse(response)


class _Permanent(Exception):
    """A failure that another try would repeat."""


def _error_text(response: requests.Response) -> str:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    return (f"HTTP {response.status_code} {error.get('code') or ''} "
            f"{error.get('message') or ''} request_id={response.headers.get('x-request-id')}")


def _parse(response: requests.Response) -> Narration:
    try:
        content = response.json()["choices"][0]["message"]["content"]
        answer = json.loads(content)
        narration, image_prompt = answer["narration"], answer.get("image_prompt") or ""
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Transient("the model's answer was not the expected JSON") from None
    if not isinstance(narration, str) or not narration.strip():
        raise _Transient("the model's answer has no narration")
    if not isinstance(image_prompt, str):
        image_prompt = ""
    return Narration(narration.strip(), image_prompt.strip() or narration.strip()[:400])
