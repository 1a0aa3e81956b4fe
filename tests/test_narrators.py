import json

import pytest
import requests

from dungeon.errors import NarratorUnavailable
from dungeon.narrators.local import LocalNarrator, action_kind, second_person
from dungeon.narrators.openai import OpenAINarrator
from dungeon.narrators.types import NarrationContext, PastTurn
from dungeon.settings import defaults
from tests.conftest import API_KEY
from tests.fakes import openai_error

CHAT = "https://api.openai.com/v1/chat/completions"
CONTEXT = NarrationContext("cyberpunk", "comic", "Chrome Rain", 42, 3, "hack the terminal",
                           [PastTurn(None, "Neon hums."), PastTurn("go left", "An alley.")])


def answer(narration="You jack in. Ice bites back.", image_prompt="A hacker at a terminal"):
    content = json.dumps({"narration": narration, "image_prompt": image_prompt})
    return {"json": {"id": "chatcmpl-1", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": content},
         "finish_reason": "stop"}]}, "headers": {"x-request-id": "req_chat"}}


def narrator(sleeps=None, **config):
    return OpenAINarrator({**defaults(), "OPENAI_API_KEY": API_KEY, **config},
                          sleep=(sleeps.append if sleeps is not None else lambda s: None))


def test_openai_narrator_sends_history_and_asks_for_json(requests_mock):
    requests_mock.post(CHAT, **answer())
    result = narrator().narrate(CONTEXT)
    body = requests_mock.last_request.json()
    assert body["model"] == "gpt-5.6-terra"
    assert "reasoning_effort" not in body and "temperature" not in body
    assert body["response_format"] == {"type": "json_object"}
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "assistant", "user", "assistant", "user"]
    assert "cyberpunk" in body["messages"][0]["content"]
    assert body["messages"][-1]["content"] == "> You hack the terminal"
    assert body["messages"][2]["content"] == "> You go left"
    assert result.narration == "You jack in. Ice bites back."
    assert result.image_prompt == "A hacker at a terminal"


def test_openai_narrator_retries_transient_failures(requests_mock):
    sleeps = []
    requests_mock.post(CHAT, [openai_error(500, "boom", type_="server_error"),
                              {"exc": requests.ReadTimeout}, answer()])
    assert narrator(sleeps).narrate(CONTEXT).narration.startswith("You jack in")
    assert len(sleeps) == 2 and sleeps[0] < sleeps[1]


@pytest.mark.parametrize("failure", [
    openai_error(401, "Incorrect API key provided.", code="invalid_api_key"),
    openai_error(429, "You exceeded your current quota.", type_="insufficient_quota",
                 code="insufficient_quota"),
    openai_error(400, "Invalid value for 'model'.", code="invalid_value", param="model"),
])
def test_openai_narrator_does_not_retry_permanent_failures(requests_mock, failure):
    requests_mock.post(CHAT, **failure)
    with pytest.raises(NarratorUnavailable):
        narrator().narrate(CONTEXT)
    assert requests_mock.call_count == 1


def test_openai_narrator_gives_up_after_its_retries(requests_mock):
    requests_mock.post(CHAT, **answer(narration=""))
    with pytest.raises(NarratorUnavailable):
        narrator(NARRATOR_RETRIES=2).narrate(CONTEXT)
    assert requests_mock.call_count == 3


def test_openai_narrator_without_a_key_is_unavailable(requests_mock):
    with pytest.raises(NarratorUnavailable):
        OpenAINarrator(defaults()).narrate(CONTEXT)
    assert requests_mock.call_count == 0


def test_narrator_defaults_to_openai_with_a_key_and_local_without(make_app):
    assert make_app().extensions["dungeon"].game.narrator.name == "local"
    with_key = make_app({"OPENAI_API_KEY": API_KEY})
    assert with_key.extensions["dungeon"].game.narrator.name == "openai"


def test_local_narrator_is_deterministic_for_a_seed():
    first, second = LocalNarrator().narrate(CONTEXT), LocalNarrator().narrate(CONTEXT)
    assert first == second
    other_seed = NarrationContext(**{**CONTEXT.__dict__, "seed": 7})
    assert LocalNarrator().narrate(other_seed) != first


@pytest.mark.parametrize("genre", ["fantasy", "scifi", "horror", "mystery", "cyberpunk",
                                   "post_apocalyptic"])
def test_local_narrator_answers_the_action_in_the_genre(genre):
    context = NarrationContext(genre, "comic", "T", 1, 1, "I take the lantern.")
    text = LocalNarrator().narrate(context).narration
    assert text.startswith("You take the lantern.") and text.endswith("What do you do next?")


@pytest.mark.parametrize(("action", "kind"), [
    ("look around", "look"), ("I climb the tower", "move"), ("grab the gem", "take"),
    ("ask the guard about the king", "talk"), ("attack the troll", "fight"),
    ("open the door", "use"), ("wait", "rest"), ("juggle", "other")])
def test_actions_are_read_for_what_the_player_does(action, kind):
    assert action_kind(action) == kind


def test_actions_are_repeated_in_the_second_person():
    assert second_person("I draw my sword!") == "draw your sword"


def test_reasoning_effort_is_sent_only_when_configured(requests_mock):
    requests_mock.post(CHAT, **answer())
    narrator(NARRATOR_REASONING_EFFORT="low").narrate(CONTEXT)
    assert requests_mock.last_request.json()["reasoning_effort"] == "low"
