"""Modes, story memory, summaries and the context budget, through both narrators."""

import dataclasses
import json
from types import SimpleNamespace

import pytest

from dungeon.errors import NarratorUnavailable
from dungeon.narrators import summary as local_summary
from dungeon.narrators.local import LocalNarrator, second_person
from dungeon.narrators.openai import (
    CONTINUE_TURN,
    OpenAINarrator,
    context_chars,
    rules_text,
)
from dungeon.narrators.summary import SUMMARY_CHARS, summarize
from dungeon.narrators.types import NarrationContext, PastTurn, StoryCard
from dungeon.settings import defaults
from tests.conftest import API_KEY
from tests.fakes import openai_error

CHAT = "https://api.openai.com/v1/chat/completions"
HISTORY = [PastTurn(None, "Neon hums over the night market."),
           PastTurn("go left", "An alley opens, slick with rain.")]
MIKA = StoryCard("Mika", ("mika", "fixer"), "A fixer who owes you a favour. She lies often.")
TOWER = StoryCard("Lin-Sato Tower", ("tower",), "Black glass, forty floors, one way in.")
ESSENTIALS = "You are Kael, a courier with a debt. The city remembers every debt."
NOTE = "Keep the tone noir; rain in every scene."
SUMMARY = "You wake in the rain with a stolen chip. You meet Mika at the noodle bar."
PASSAGE = "The rain stops at once, and the crowd parts for a stranger in a white coat."


def context(action="open the door", mode="do", turn=3, history=HISTORY, **memory):
    return NarrationContext("cyberpunk", "comic", "Chrome Rain", 42, turn, action,
                            list(history), mode=mode, **memory)


def local(**kwargs):
    return LocalNarrator().narrate(context(**kwargs)).narration


def answer(content):
    return {"json": {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-5.6-terra",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": content,
                                                          "refusal": None},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 10,
                               "total_tokens": 20}},
            "headers": {"x-request-id": "req_chat"}}


def narration_answer(narration="Rain hisses on the neon.", image_prompt="A wet neon street"):
    return answer(json.dumps({"narration": narration, "image_prompt": image_prompt}))


def narrator(**config):
    return OpenAINarrator({**defaults(), "OPENAI_API_KEY": API_KEY, **config},
                          sleep=lambda seconds: None)


def sent(requests_mock, ctx, **config):
    requests_mock.post(CHAT, **narration_answer())
    narrator(**config).narrate(ctx)
    return requests_mock.last_request.json()["messages"]


# --- the local narrator, mode by mode ---

def test_local_do_repeats_the_action_in_the_second_person():
    text = local(action="I draw my sword.")
    assert text.startswith("You draw your sword.") and text.endswith("What do you do next?")


@pytest.mark.parametrize(("words", "spoken"), [
    ("Who goes there?", "You ask, “Who goes there?”"),
    ("I come in peace", "You say, “I come in peace.”"),
    ('"we mean no harm"', "You say, “We mean no harm.”"),
])
def test_local_say_quotes_the_words_and_someone_answers(words, spoken):
    for seed_turn in range(1, 6):
        text = local(action=words, mode="say", turn=seed_turn)
        assert text.startswith(spoken)
        reply = text[len(spoken):]
        assert "“" in reply and "”" in reply  # somebody speaks back
        assert not text.startswith(f"You {second_person(words)}.")


def test_local_say_shouts_an_exclamation():
    assert local(action="Run!", mode="say").startswith("You shout, “Run!”")


def test_local_story_continues_the_passage_without_restating_it():
    for turn in range(1, 8):
        text = local(action=PASSAGE, mode="story", turn=turn)
        assert PASSAGE not in text and "The rain stops at once" not in text
        assert not text.startswith("You ")
        assert text.endswith("What happens next?")


def test_local_continue_moves_on_without_an_action():
    for turn in range(1, 8):
        text = local(action=None, mode="continue", turn=turn)
        assert not text.startswith("You ") and "hesitate" not in text
        assert "You come to your senses" not in text  # not an opening either
        assert text.endswith("What do you do?")
    # an action sent along with "continue" is not echoed
    assert "open the door" not in local(action="open the door", mode="continue")


def test_local_modes_read_differently():
    texts = {mode: local(action=None if mode == "continue" else "open the door", mode=mode)
             for mode in ("do", "say", "story", "continue")}
    assert len(set(texts.values())) == 4
    assert texts["do"].startswith("You open the door.")
    assert texts["say"].startswith("You say, “Open the door.”")
    assert not texts["story"].startswith("You open the door")


@pytest.mark.parametrize("mode", ["do", "say", "story", "continue"])
def test_local_modes_are_deterministic_by_seed(mode):
    ctx = context(mode=mode, action=None if mode == "continue" else "open the door")
    assert LocalNarrator().narrate(ctx) == LocalNarrator().narrate(ctx)
    assert LocalNarrator().narrate(dataclasses.replace(ctx, seed=7)) != \
        LocalNarrator().narrate(ctx)


@pytest.mark.parametrize("mode", ["do", "say", "story", "continue"])
def test_local_image_prompts_describe_the_scene(mode):
    action = {"do": "open the door", "say": "Who goes there?", "story": PASSAGE,
              "continue": None}[mode]
    prompt = LocalNarrator().narrate(context(action=action, mode=mode)).image_prompt
    assert prompt and len(prompt) <= 400
    assert not any(quote in prompt for quote in '"“”')
    if mode == "say":
        assert "Who goes there" not in prompt  # the picture shows the scene, not the words


def test_local_recalls_a_story_card_it_is_given():
    text = local(action="I look for Mika in the crowd", cards=[TOWER, MIKA])
    assert "Mika" in text and "A fixer who owes you a favour." in text  # the card the action names
    assert "She lies often" not in text  # a detail, not the whole card
    assert "Mika" not in local(action="I look for the exit")  # no card, no Mika


def test_local_opening_takes_the_plot_essentials_for_its_purpose():
    opening = local(action=None, turn=0, history=[], plot_essentials=ESSENTIALS)
    assert "You are Kael, a courier with a debt." in opening
    assert "You have one purpose" not in opening
    assert "You have one purpose" in local(action=None, turn=0, history=[])


def test_local_continue_looks_back_on_the_summary():
    text = local(action=None, mode="continue", summary=SUMMARY)
    assert "You think back on the road so far: you " in text
    assert ("you wake in the rain with a stolen chip." in text
            or "you meet Mika at the noodle bar." in text)


# --- the OpenAI narrator: what the request holds, and where ---

@pytest.mark.parametrize(("mode", "action", "final"), [
    ("do", "open the door", "> You open the door"),
    ("do", "I draw my sword!", "> You draw your sword"),
    ("say", "Who goes there?", '> You say: "Who goes there?"'),
    ("say", "“stay back”", '> You say: "Stay back."'),
    ("continue", None, CONTINUE_TURN),
])
def test_openai_final_message_is_the_action_written_for_its_mode(requests_mock, mode, action,
                                                                   final):
    messages = sent(requests_mock, context(action=action, mode=mode))
    assert messages[-1] == {"role": "user", "content": final}


def test_openai_story_passage_is_sent_verbatim_and_asked_to_be_continued(requests_mock):
    messages = sent(requests_mock, context(action=PASSAGE, mode="story"))
    final = messages[-1]["content"]
    assert messages[-1]["role"] == "user"
    assert final.startswith(PASSAGE + "\n\n") and "Continue the story" in final
    assert "> You" not in final


def test_openai_continue_sends_no_action(requests_mock):
    messages = sent(requests_mock, context(action="open the door", mode="continue"))
    assert not any("open the door" in m["content"] for m in messages)


@pytest.mark.parametrize(("mode", "words"), [
    ("do", "tell what happens when they do it"), ("say", "react or answer"),
    ("story", "do not repeat or restate it"), ("continue", "raises the tension")])
def test_openai_rules_say_what_the_mode_asks(requests_mock, mode, words):
    messages = sent(requests_mock, context(mode=mode))
    assert messages[0]["role"] == "system" and words in messages[0]["content"]
    assert messages[0]["content"] == rules_text(context(mode=mode))


def test_openai_opening_begins_the_adventure(requests_mock):
    messages = sent(requests_mock, context(action=None, turn=0, history=[],
                                           plot_essentials=ESSENTIALS))
    assert [m["role"] for m in messages] == ["system", "system", "user"]
    assert "opening passage" in messages[0]["content"]
    assert messages[-1]["content"] == "Begin the adventure."


def test_openai_places_every_piece_of_story_memory(requests_mock):
    unused = StoryCard("The Docks", ("docks",), "Where the bodies float.")
    messages = sent(requests_mock, context(
        action="Is Mika here?", mode="say", plot_essentials=ESSENTIALS, authors_note=NOTE,
        cards=[MIKA, TOWER], summary=SUMMARY))
    roles = [m["role"] for m in messages]
    assert roles == ["system", "system", "system", "system",  # rules, essentials, summary, cards
                     "assistant", "user", "assistant",  # the recent turns
                     "system", "user"]  # the author's note, just before the action
    assert messages[1]["content"] == f"Plot essentials: {ESSENTIALS}"
    assert messages[2]["content"] == f"The story so far: {SUMMARY}"
    assert messages[3]["content"] == ("World info:\n"
                                      f"- Mika: {MIKA.text}\n- Lin-Sato Tower: {TOWER.text}")
    assert json.loads(messages[4]["content"]) == {"narration": HISTORY[0].narration}
    assert messages[5]["content"] == "> You go left"
    assert json.loads(messages[6]["content"]) == {"narration": HISTORY[1].narration}
    assert messages[7]["content"] == f"[Author's note: {NOTE}]"
    assert messages[8]["content"] == '> You say: "Is Mika here?"'
    # exactly the cards it is given: an untriggered one is nowhere
    assert not any("Docks" in m["content"] or unused.text in m["content"] for m in messages)


@pytest.mark.parametrize("empty", [None, "", "   \n "])
def test_openai_leaves_out_empty_pieces(requests_mock, empty):
    messages = sent(requests_mock, context(plot_essentials=empty, authors_note=empty,
                                           summary=empty, cards=[]))
    assert [m["role"] for m in messages] == ["system", "assistant", "user", "assistant", "user"]
    text = "\n".join(m["content"] for m in messages)
    for label in ("Plot essentials", "The story so far", "World info", "Author's note"):
        assert label not in text


def test_openai_labels_past_turns_by_their_mode(requests_mock):
    history = [PastTurn(None, "Opening."), PastTurn(None, "The story ran on."),
               SimpleNamespace(action="Hello?", narration="Nobody answers.", mode="say"),
               SimpleNamespace(action=PASSAGE, narration="The stranger smiles.", mode="story"),
               SimpleNamespace(action=None, narration="Sirens.", mode="continue"),
               SimpleNamespace(action="run", narration="You run.", mode="do")]
    messages = sent(requests_mock, context(history=history))
    players = [m["content"] for m in messages if m["role"] == "user"]
    assert players == [CONTINUE_TURN, '> You say: "Hello?"', PASSAGE, CONTINUE_TURN,
                       "> You run", "> You open the door"]
    assert messages[1]["role"] == "assistant"  # nothing of the player's before the opening


def test_openai_request_holds_to_the_context_budget(requests_mock):
    history = [PastTurn(f"action {n} " + "a" * 80, f"Passage {n}. " + "p" * 400)
               for n in range(40)]
    cards = [StoryCard(f"Card {n}", (f"k{n}",), "c" * 1000) for n in range(50)]
    big = context(action="open the door " + "x" * 400, history=history, cards=cards,
                  plot_essentials="E" * 1000, authors_note="N" * 300, summary="S" * 600)
    assert context_chars(big) > 6000
    for budget in (6000, 3000):
        messages = sent(requests_mock, big, NARRATOR_CONTEXT_CHARS=budget)
        assert sum(len(m["content"]) for m in messages) <= budget + len(rules_text(big))
        text = "\n".join(m["content"] for m in messages)
        assert "Passage 39." in text  # the latest turn stays
        assert "Passage 0." not in text  # the oldest went first
        assert messages[1]["content"] == "Plot essentials: " + "E" * 1000
        assert messages[-2]["content"] == f"[Author's note: {'N' * 300}]"
        assert messages[-1]["content"] == "> You open the door " + "x" * 400


def test_openai_budget_defaults_to_six_thousand_characters(requests_mock):
    history = [PastTurn(f"act {n}", "p" * 500) for n in range(30)]
    big = context(history=history)
    config = {**defaults(), "OPENAI_API_KEY": API_KEY}
    config.pop("NARRATOR_CONTEXT_CHARS", None)
    requests_mock.post(CHAT, **narration_answer())
    OpenAINarrator(config).narrate(big)
    messages = requests_mock.last_request.json()["messages"]
    assert sum(len(m["content"]) for m in messages) <= 6000 + len(rules_text(big))


def test_context_chars_counts_everything_but_the_rules(requests_mock):
    ctx = context(mode="say", plot_essentials=ESSENTIALS, authors_note=NOTE, cards=[MIKA],
                  summary=SUMMARY)
    messages = sent(requests_mock, ctx)
    assert sum(len(m["content"]) for m in messages) == len(rules_text(ctx)) + context_chars(ctx)


# --- summaries ---

TURNS = [PastTurn("open the chest", "You open the chest. Inside lies a silver key."),
         PastTurn("Who is there?", "A voice answers from the dark. It knows your name.")]


def test_openai_summarize_sends_the_old_summary_and_the_new_turns(requests_mock):
    requests_mock.post(CHAT, **answer(json.dumps({"summary": " You hold a silver key.  "})))
    result = narrator().summarize(SUMMARY, TURNS)
    assert result == "You hold a silver key."
    body = requests_mock.last_request.json()
    assert body["model"] == "gpt-5.6-terra"
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system["role"] == "system" and "600 characters" in system["content"]
    assert user["role"] == "user" and user["content"].startswith(f"Summary so far: {SUMMARY}")
    assert "> You open the chest\nYou open the chest. Inside lies a silver key." in \
        user["content"]
    assert TURNS[1].narration in user["content"]


def test_openai_summary_is_cut_to_its_limit(requests_mock):
    requests_mock.post(CHAT, **answer(json.dumps({"summary": "word " * 400})))
    assert len(narrator().summarize(None, TURNS)) <= SUMMARY_CHARS


def test_openai_summarize_failures_are_narrator_unavailable(requests_mock):
    requests_mock.post(CHAT, **openai_error(500, "boom", type_="server_error"))
    with pytest.raises(NarratorUnavailable):
        narrator(NARRATOR_RETRIES=1).summarize(SUMMARY, TURNS)
    assert requests_mock.call_count == 2
    requests_mock.post(CHAT, **answer(json.dumps({"story": "wrong field"})))
    with pytest.raises(NarratorUnavailable):
        narrator(NARRATOR_RETRIES=0).summarize(SUMMARY, TURNS)
    with pytest.raises(NarratorUnavailable):
        OpenAINarrator(defaults()).summarize(SUMMARY, TURNS)


def test_openai_summarize_with_no_new_turns_makes_no_call(requests_mock):
    assert narrator().summarize(SUMMARY, []) == SUMMARY
    assert requests_mock.call_count == 0


def test_local_summary_keeps_the_gist_and_the_first_sentence_of_each_passage():
    result = summarize(SUMMARY, TURNS)
    assert result == (f"{SUMMARY} You open the chest. A voice answers from the dark.")
    assert LocalNarrator().summarize(SUMMARY, TURNS) == result
    assert summarize(None, [PastTurn(None, "Chrome Rain. You come to your senses. More.")]) \
        == "You come to your senses."  # a title line says too little


def test_local_summary_stays_within_its_limit_and_is_deterministic():
    turns = [PastTurn(f"act {n}", f"Event number {n} happens here in the story. Then more.")
             for n in range(100)]
    first = summarize(None, turns[:50])
    result = summarize(first, turns[50:])
    assert len(first) <= SUMMARY_CHARS and len(result) <= SUMMARY_CHARS
    assert result.startswith("Event number 0 happens")  # how it began
    assert result.endswith("Event number 99 happens here in the story.")  # the latest
    assert result == summarize(summarize(None, turns[:50]), turns[50:])
    assert len(summarize(None, [PastTurn(None, "x" * 5000)])) <= local_summary.SENTENCE_CHARS
    assert len(summarize(None, turns, limit=100)) <= 100
