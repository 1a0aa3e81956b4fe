"""Moderation of what players write, before it reaches the narrator or the database.

``TEXT_MODERATION``:

- ``off``: nothing is checked.
- ``local``: built-in patterns for what no game of any level may hold, and
  ``TEXT_DENY_PATTERNS`` (category ``custom``).
- ``openai``: the same, then OpenAI's ``/v1/moderations`` with
  ``omni-moderation-latest``.

What is refused depends on the player's safety level (``strict``,
``moderate``, ``mature``, in the spirit of Safe/Moderate/Mature): each level
refuses a set of the moderation categories.  A refusal is 422
``content_refused`` with the categories in ``details``; nothing is stored,
and the log has the categories and a hash of the text, never the text.

When the moderation call itself fails, player text **fails closed** (503
``moderation_unavailable``): a refusal costs the player one retry, while a
text let through unchecked is stored for good and fed to the narrator, which
writes more of it.  Image prompts fail open (``dungeon/images/prompts.py``):
the provider's own safety system still checks them, and the worst case is a
refused picture, which the placeholder covers.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from typing import Any

import requests

from .errors import ConfigError, ModerationUnavailable, TextRefused

log = logging.getLogger(__name__)

MODEL = "omni-moderation-latest"
LEVELS = ("strict", "moderate", "mature")
# The categories each level refuses (OpenAI's names; ``custom`` is the operator's list).
REFUSED: dict[str, frozenset[str]] = {
    "mature": frozenset({"sexual/minors", "hate/threatening", "self-harm/instructions",
                         "illicit/violent", "custom"}),
}
REFUSED["moderate"] = REFUSED["mature"] | {"sexual", "hate", "harassment/threatening",
                                            "self-harm/intent", "violence/graphic"}
REFUSED["strict"] = REFUSED["moderate"] | {"harassment", "self-harm", "illicit", "violence"}
# What the image request's ``moderation`` parameter is at each level.
IMAGE_MODERATION = {"strict": "auto", "moderate": "auto", "mature": "low"}

# What no game may hold at any level, spotted without a service.  Deliberately
# narrow: the OpenAI check and the operator's patterns do the broad work.
_BUILT_IN = (
    ("sexual/minors",
     r"\b(child|children|kid|kids|minor|minors|underage|preteen)\b.{0,40}"
     r"\b(nude|naked|sex|sexual|explicit|porn)\w*"),
    ("sexual/minors",
     r"\b(nude|naked|sex|sexual|explicit|porn)\w*\b.{0,40}"
     r"\b(child|children|kid|kids|minor|minors|underage|preteen)\b"),
    ("self-harm/instructions",
     r"\bhow (do i|to|can i)\b.{0,30}\b(kill|hurt|cut|harm) (myself|yourself)\b"),
    ("illicit/violent",
     r"\b(step[- ]by[- ]step|instructions|recipe|how to (make|build))\b.{0,40}"
     r"\b(pipe bomb|nerve agent|ricin|sarin)\b"),
)


class TextModerator:
    """Checks a player's texts against their safety level; raises TextRefused."""

    def __init__(self, config: Mapping[str, Any], session: requests.Session | None = None):
        self.mode = config["TEXT_MODERATION"]
        self.default_level = config["SAFETY_LEVEL"]
        self.patterns = [(category, re.compile(pattern, re.IGNORECASE | re.DOTALL))
                         for category, pattern in _BUILT_IN]
        self.patterns += [("custom", _compile(p)) for p in config["TEXT_DENY_PATTERNS"]]
        self.api_key = config["OPENAI_API_KEY"]
        self.base_url = config["OPENAI_BASE_URL"].rstrip("/")
        self.timeout = (config["IMAGE_CONNECT_TIMEOUT"], config["TEXT_MODERATION_TIMEOUT"])
        self.session = session or requests.Session()
        if self.mode == "openai" and not self.api_key:
            raise ConfigError("TEXT_MODERATION: openai needs OPENAI_API_KEY")

    def check(self, texts: Mapping[str, str | None], level: str | None = None) -> None:
        """Refuse ``texts`` (field name → text) if any holds a category ``level`` refuses."""
        if self.mode == "off":
            return
        level = level or self.default_level
        present = {name: text for name, text in texts.items() if text}
        if not present:
            return
        flagged: dict[str, set[str]] = {}
        for name, text in present.items():
            found = {category for category, pattern in self.patterns if pattern.search(text)}
            if found:
                flagged[name] = found
        if self.mode == "openai":
            for name, categories in self._moderate(present).items():
                flagged.setdefault(name, set()).update(categories)
        refused = {name: sorted(categories & REFUSED[level])
                   for name, categories in flagged.items() if categories & REFUSED[level]}
        if refused:
            categories = sorted({c for found in refused.values() for c in found})
            log.warning("player text refused", extra={
                "categories": categories, "fields": sorted(refused), "safety_level": level,
                "text_sha256": {name: _digest(present[name]) for name in refused}})
            raise TextRefused(details={"categories": categories, "fields": sorted(refused)})

    def _moderate(self, texts: Mapping[str, str]) -> dict[str, set[str]]:
        names = list(texts)
        try:
            response = self.session.post(
                f"{self.base_url}/moderations", timeout=self.timeout,
                headers={"Authorization": f"Bearer {self.api_key}"},
                json={"model": MODEL, "input": [texts[name] for name in names]})
            response.raise_for_status()
            results = response.json()["results"]
            if len(results) != len(names) or not all(
                    isinstance(r, dict) and isinstance(r.get("categories"), dict)
                    for r in results):
                # An answer that does not say, for each text, what it holds
                # checks nothing: it counts as a failure (closed).
                raise ValueError("one result with categories per input expected")
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            log.error("text moderation failed, text refused for now: %s",
                      type(exc).__name__, extra={"status": status})
            raise ModerationUnavailable() from None
        return {name: {category for category, hit in result["categories"].items() if hit}
                for name, result in zip(names, results, strict=True)}


def image_moderation(level: str | None) -> str:
    """Return the image request's ``moderation`` value for a safety level."""
    return IMAGE_MODERATION.get(level or "moderate", "auto")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _compile(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"TEXT_DENY_PATTERNS: {pattern!r} is not a regular expression: "
                          f"{exc}") from None
