import pytest

from dungeon.errors import PromptRefused
from dungeon.images.prompts import PromptChecker, clean, truncate
from dungeon.settings import defaults
from tests.conftest import API_KEY

MODERATIONS = "https://api.openai.com/v1/moderations"


def checker(**config):
    return PromptChecker({**defaults(), **config})


@pytest.mark.parametrize(("raw", "cleaned"), [
    ("  a   b\t\tc \n d ", "a b c d"),
    ("zero\u200bwidth\u200djoin", "zerowidthjoin"),
    ("bell\x07 and null\x00", "bell and null"),
    ("rtl\u202eoverride", "rtloverride"),
])
def test_clean_strips_invisible_characters_and_collapses_space(raw, cleaned):
    assert clean(raw) == cleaned


def test_truncate_cuts_at_a_word_boundary():
    assert truncate("the quick brown fox", 12) == "the quick"
    assert truncate("short", 100) == "short"
    assert truncate("x" * 50, 10) == "x" * 10


@pytest.mark.parametrize("empty", ["", "   ", "\u200b\u200b", "\x00\x01"])
def test_empty_prompts_are_refused(empty):
    with pytest.raises(PromptRefused, match="empty prompt"):
        checker().check(empty)


def test_local_moderation_refuses_the_built_in_list():
    with pytest.raises(PromptRefused):
        checker(IMAGE_MODERATION="local").check("a naked child")
    assert checker(IMAGE_MODERATION="local").check("a knight") == "a knight"


def test_openai_moderation_refuses_flagged_prompts(requests_mock):
    requests_mock.post(MODERATIONS, json={"id": "modr-1", "model": "omni-moderation-latest",
                                          "results": [{"flagged": True, "categories": {
                                              "violence": True, "hate": False}}]})
    with pytest.raises(PromptRefused) as caught:
        checker(IMAGE_MODERATION="openai", OPENAI_API_KEY=API_KEY).check("something awful")
    assert caught.value.reasons == ["flagged by moderation: violence"]
    assert requests_mock.last_request.json() == {"model": "omni-moderation-latest",
                                                 "input": "something awful"}


def test_openai_moderation_failure_lets_the_prompt_through(requests_mock):
    requests_mock.post(MODERATIONS, status_code=503, json={"error": {"message": "down"}})
    assert checker(IMAGE_MODERATION="openai", OPENAI_API_KEY=API_KEY).check("a boat") == "a boat"
