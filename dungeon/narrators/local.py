"""The offline narrator: a genre-flavoured story that answers the player, with no key.

It reads the player's text for a verb and an object, and answers from phrase
tables per genre, choosing with a random generator seeded by the game's seed,
the turn number and the action, so the same game replays the same story.

Each mode reads differently: ``do`` repeats the action in the second person
("You open the door.") and tells what it led to; ``say`` quotes the player's
words as spoken ("You ask, “Who goes there?”") and someone answers; ``story``
takes the player's passage as written and goes on with the next beat, without
restating it; ``continue`` moves the scene on by itself, a notch more tense.
The story memory shows through: a story card given for the turn is recalled
by its title and first sentence, the plot essentials' first sentence stands in
for the game's own quest, and a ``continue`` turn looks back on the summary.
"""

from __future__ import annotations

import random
import re

import dungeon

from .summary import cut, first_sentence, sentences, summarize
from .types import Narration, NarrationContext, PastTurn, StoryCard

VERBS = {
    "look": ("look", "examine", "inspect", "search", "read", "study", "check", "observe"),
    "move": ("go", "walk", "run", "enter", "climb", "head", "follow", "leave", "explore",
             "descend", "cross", "sneak", "return", "flee", "travel"),
    "take": ("take", "grab", "pick", "steal", "collect", "pocket", "loot"),
    "talk": ("talk", "ask", "say", "tell", "speak", "shout", "call", "greet", "whisper"),
    "fight": ("attack", "fight", "hit", "strike", "shoot", "stab", "kick", "punch", "kill"),
    "use": ("use", "open", "light", "cast", "drink", "eat", "push", "pull", "turn", "unlock",
            "hack", "repair", "throw", "wear"),
    "rest": ("wait", "rest", "sleep", "listen", "hide", "pray", "think", "breathe"),
}

WORLDS = {
    "fantasy": {
        "places": ["a moss-choked ruin", "the old king's road", "a tavern with a crooked sign",
                   "a grove where the trees lean close", "the gate of a dwarven hall"],
        "people": ["a hooded ranger", "a nervous apprentice mage", "an old knight with one eye",
                   "a goblin trader", "a wandering bard"],
        "things": ["a rune-scratched key", "a vial of silver light", "a rusted longsword",
                   "a map drawn in blood-red ink", "a dragon scale the size of a shield"],
        "senses": ["Torchlight gutters across old stone.", "Somewhere, a raven laughs.",
                   "The air smells of rain and woodsmoke.", "Distant bells toll once."],
        "threats": ["a troll", "a band of brigands", "a shadow with too many teeth",
                    "a cursed suit of armour"],
    },
    "scifi": {
        "places": ["a derelict cargo bay", "the bridge of a silent starship",
                   "a hydroponics deck gone wild", "an airlock rimed with frost",
                   "a research outpost on a red moon"],
        "people": ["a maintenance android", "a tired smuggler", "the ship's flickering AI",
                   "a xenobiologist in a cracked suit", "a security officer"],
        "things": ["a data shard", "a plasma cutter", "an alien seed pod", "a keycard",
                   "a sealed medical kit"],
        "senses": ["Warning lights pulse amber.", "The hull groans under strain.",
                   "Recycled air hisses through the vents.", "Stars wheel past the viewport."],
        "threats": ["a rogue drone", "something moving in the ducts", "a boarding party",
                    "a hull breach"],
    },
    "horror": {
        "places": ["a hallway where the wallpaper peels", "the cellar stairs",
                   "a nursery with one rocking chair", "the fogbound graveyard",
                   "an attic that is colder than it should be"],
        "people": ["a child who does not blink", "the caretaker with muddy boots",
                   "a woman humming an old song", "a man in a rain-soaked coat"],
        "things": ["a photograph with a face scratched out", "a candle stub",
                   "a music box", "a diary with the last pages torn", "a rusted key"],
        "senses": ["The floorboards creak behind you.", "A door closes somewhere upstairs.",
                   "Your breath fogs in the air.", "Something scratches inside the walls."],
        "threats": ["a figure at the end of the hall", "whispering from the dark",
                    "a shape beneath the sheet", "the thing in the cellar"],
    },
    "mystery": {
        "places": ["a rain-slick alley", "the victim's study", "a smoky jazz club",
                   "the harbour warehouse", "the police records room"],
        "people": ["a nervous butler", "a detective with a cold cigar", "the grieving widow",
                   "a bartender who saw too much", "a reporter with sharp questions"],
        "things": ["a torn theatre ticket", "a monogrammed cufflink", "a letter never sent",
                   "a pawn receipt", "a revolver with one round missing"],
        "senses": ["Rain drums on the awning.", "A foghorn moans across the water.",
                   "Cheap perfume hangs in the air.", "A clock ticks too loudly."],
        "threats": ["a man in a grey coat following you", "a gun in the dark",
                    "a lie that is starting to unravel", "the killer's next move"],
    },
    "cyberpunk": {
        "places": ["a neon-drenched night market", "a corporate lobby of black glass",
                   "a fixer's noodle bar", "the server farm under the arcology",
                   "a rooftop above the smog"],
        "people": ["a street samurai with chrome eyes", "a fixer called Mika",
                   "a corporate suit with a fake smile", "a kid netrunner", "a ripperdoc"],
        "things": ["an encrypted chip", "a stolen access badge", "a smart pistol",
                   "a black-market cyberdeck", "a vial of neural booster"],
        "senses": ["Holo-ads flicker in the rain.", "Drones hum overhead.",
                   "Synth-bass thuds from a club below.", "The city never stops buzzing."],
        "threats": ["corporate security", "a gang enforcer", "black ICE",
                    "a combat drone"],
    },
    "post_apocalyptic": {
        "places": ["a gutted highway overpass", "a flooded supermarket",
                   "a settlement behind scrap walls", "a radio tower in the dust",
                   "the ruins of a hospital"],
        "people": ["a scavenger with a dog", "the settlement's doctor",
                   "a trader with a cart of junk", "a raider who wants to defect",
                   "a child who has never seen rain"],
        "things": ["a can of clean water", "a geiger counter", "a crossbow",
                   "a hand-drawn map to a bunker", "a box of batteries"],
        "senses": ["Dust devils spin across the road.", "The wind carries ash.",
                   "A distant engine coughs.", "Crows pick at the wreckage."],
        "threats": ["raiders", "a pack of feral dogs", "a radiation storm",
                    "something mutated in the ruins"],
    },
}

OUTCOMES = {
    "look": ["Looking closer, you find more than you expected: {thing}.",
             "Nothing stirs at first, but then you spot {thing}."],
    "move": ["The way leads you to {place}.", "Before long, {place} opens up before you."],
    "take": ["It is heavier than it looks, and {person} saw you take it.",
             "You stow it away; it may prove useful before long."],
    "talk": ["{person_cap} answers: \"{line}\"", "{person_cap} steps closer. \"{line}\""],
    "fight": ["{threat_cap} answers in kind, and for a breath nothing else exists.",
              "It reels back, but this is not over: {threat} is coming."],
    "use": ["Something clicks, and {thing} is revealed.",
            "For a moment the air itself seems to hold its breath."],
    "rest": ["In the quiet, you remember {thing}.",
             "When you look up again, {person} is watching you."],
    "other": ["{person_cap} raises an eyebrow.",
              "For a moment nothing happens. Then {threat} stirs nearby."],
}

# Each game draws one quest from its genre, by its seed, and keeps it.
QUESTS = {
    "fantasy": ["recover the stolen crown of Eldmoor", "find the dragon that burned your village",
                "carry a sealed letter to the queen before the new moon"],
    "scifi": ["restore power before the station's orbit decays",
              "find out why the crew went silent", "reach the escape pods on deck nine"],
    "horror": ["leave the house before midnight", "learn what happened to your sister",
               "break the curse on the Whitlock family"],
    "mystery": ["find out who killed the councilman", "recover the missing ledger",
                "clear your partner's name before the trial"],
    "cyberpunk": ["steal the prototype from the Lin-Sato tower",
                  "find the netrunner who sold you out", "get the data to a journalist by dawn"],
    "post_apocalyptic": ["bring the water filter home to your settlement",
                         "find the bunker on the hand-drawn map",
                         "escort the doctor across the wastes"],
}
# Tension rises with the turn number: the story moves from exploring to danger.
PRESSURE = [
    (0, ["", "", "You remember why you came: to {quest}."]),
    (4, ["Time is running short if you are to {quest}.", "You sense you are being followed.",
         ""]),
    (8, ["{threat_cap} is close now; you can feel it.",
         "Everything you have done leads here: you must {quest}.",
         "There will be no second chance."]),
]

# A player's plot essentials replace the game's quest in the pressure lines.
ESSENTIAL_PRESSURE = {0: "You remember why you came. {essential}",
                      4: "Time is running short. {essential}",
                      8: "Everything you have done leads here. {essential}"}

LINES = ["You're not the first to come asking.", "Keep your voice down. They listen.",
         "I'll help you, but it will cost you.", "Turn back while you still can.",
         "I knew you would come. Follow me."]
ANSWERS = ["Who's asking?", "Not here. Not where they can hear us.",
           "You already know the answer to that.", "Maybe. It depends who sent you.",
           "Ask me again and I'll pretend I never heard you."]

# What people do when the player speaks, by how the words end.
REPLIES = {
    "ask": ["{person_cap} hesitates, then answers: “{answer}”",
            "{person_cap} looks at you for a long moment. “{answer}”"],
    "shout": ["Your voice rings out. {person_cap} flinches, then calls back: “{line}”",
              "Your shout carries further than you meant. {threat_cap} has heard it too."],
    "say": ["{person_cap} takes in your words. “{line}”",
            "{person_cap} nods slowly at what you said. “{line}”"],
}
# The next beat after a passage the player wrote.
STORY_BEATS = ["Then {person} steps into the moment, as if it had been waiting for them.",
               "That is when {threat} makes itself known.",
               "No one notices {thing} at first, but it is there, and it changes everything.",
               "The moment passes, and the way leads on to {place}.",
               "A heartbeat later, the silence breaks: {threat} is near."]
# What happens when the player lets the story run on.
CONTINUE_OPENERS = ["Time passes.", "Moments slip by.", "The world does not wait for you.",
                    "For a while, nothing stirs."]
DEVELOPMENTS = ["Then, without warning, {threat} comes into view, closer than before.",
                "{person_cap} arrives out of breath, with news that cannot wait.",
                "The way ahead changes: {place} lies before you now.",
                "Something shifts nearby, and {thing} is suddenly within reach.",
                "A sound carries from far off, and you know {threat} has found your trail."]
CARD_LINES = ["{title} is on your mind. {detail}", "You think of {title}. {detail}",
              "Something here brings {title} to mind. {detail}"]

_WORD = re.compile(r"[a-z']+")
_QUOTES = "\"“”«»"  # double quotes: speech marks, never part of a word


@dungeon.hookimpl
def register_narrators(register):
    """Register the offline narrator."""
    register(LocalNarrator())


class LocalNarrator:
    """Writes the story from phrase tables; needs no network and no key."""

    name = "local"

    def narrate(self, context: NarrationContext) -> Narration:
        """Return the next passage: an opening, or an answer to the player's turn."""
        kind = turn_kind(context)
        key = (f"{context.seed}:{context.turn}:{context.action}" if kind in ("do", "opening")
               else f"{context.seed}:{context.turn}:{kind}:{context.action}")
        rng = random.Random(key)
        world = WORLDS.get(context.genre, WORLDS["fantasy"])
        write = {"opening": self._opening, "do": self._do, "say": self._say,
                 "story": self._story, "continue": self._continue}[kind]
        text, image_prompt = write(rng, world, context)
        return Narration(text, _clean_prompt(image_prompt))

    def summarize(self, summary: str | None, turns: list[PastTurn]) -> str:
        """Return the story so far, extracted from ``summary`` and the passages of ``turns``."""
        return summarize(summary, turns)

    def _opening(self, rng: random.Random, world: dict, context: NarrationContext):
        place, person, thing = (rng.choice(world[k]) for k in ("places", "people", "things"))
        purpose = essential(context) or f"You have one purpose: to {quest_for(context)}."
        parts = [f"{context.title}. You come to your senses. Around you: {place}.",
                 rng.choice(world["senses"]), purpose,
                 card_line(rng, context),
                 f"{_cap(person)} watches you from the shadows, and at your feet lies "
                 f"{thing}. What do you do?"]
        return _join(parts), (f"{_cap(place)}, with {person} watching from the shadows and "
                              f"{thing} on the ground")

    def _do(self, rng: random.Random, world: dict, context: NarrationContext):
        action = context.action or ""
        fields = _fields(rng, world, context)
        consequence = rng.choice(OUTCOMES[action_kind(action)]).format(**fields)
        pressure = _pressure_line(rng, context, context.turn, fields)
        opening = f"You {second_person(action)}."
        parts = [opening, consequence, rng.choice(world["senses"]), pressure,
                 card_line(rng, context), "What do you do next?"]
        return _join(parts), f"{opening} {consequence}"

    def _say(self, rng: random.Random, world: dict, context: NarrationContext):
        words = spoken(context.action or "")
        verb = "ask" if words.endswith("?") else "shout" if words.endswith("!") else "say"
        fields = _fields(rng, world, context)
        template = rng.choice(REPLIES[verb])
        reply, sense = template.format(**fields), rng.choice(world["senses"])
        parts = [f"You {verb}, “{words}”", reply, sense,
                 _pressure_line(rng, context, context.turn, fields), card_line(rng, context),
                 "What do you do next?"]
        # The picture shows who hears the words, never the words themselves.
        if "{person" in template:
            return _join(parts), f"You face {fields['person']}, deep in conversation. {sense}"
        return _join(parts), f"{fields['threat_cap']} turns towards your voice. {sense}"

    def _story(self, rng: random.Random, world: dict, context: NarrationContext):
        fields = _fields(rng, world, context)
        beat = rng.choice(STORY_BEATS).format(**fields)
        parts = [beat, rng.choice(world["senses"]), card_line(rng, context),
                 _pressure_line(rng, context, context.turn, fields), "What happens next?"]
        written = first_sentence(context.action or "", min_words=1)
        return _join(parts), f"{written} {beat}".strip()

    def _continue(self, rng: random.Random, world: dict, context: NarrationContext):
        fields = _fields(rng, world, context)
        development = rng.choice(DEVELOPMENTS).format(**fields)
        sense = rng.choice(world["senses"])
        # Letting the story run on raises the stakes: the tension of a later turn, never none.
        pressure = _pressure_line(rng, context, context.turn + 4, fields, quiet=False)
        parts = [rng.choice(CONTINUE_OPENERS), development, recollection(rng, context), sense,
                 card_line(rng, context), pressure, "What do you do?"]
        return _join(parts), f"{development} {sense}"


def turn_kind(context: NarrationContext) -> str:
    """Return what the passage is: ``opening``, ``do``, ``say``, ``story`` or ``continue``.

    A turn with no action is the opening when it is the game's first, and a
    ``continue`` otherwise; an unknown mode is read as ``do``.
    """
    if context.mode == "continue" or context.action is None:
        return "opening" if context.turn == 0 and not context.history else "continue"
    return context.mode if context.mode in ("say", "story") else "do"


def action_kind(action: str) -> str:
    """Return what kind of action the player took: look, move, take, talk, fight, use, rest."""
    for word in _WORD.findall(action.lower()):
        for kind, verbs in VERBS.items():
            if word in verbs:
                return kind
    return "other"


def second_person(action: str) -> str:
    """Return the player's action as the narrator repeats it: "I open it." -> "open it"."""
    text = " ".join(action.split()).rstrip(".!?")
    text = re.sub(r"^(i|i'll|i will|let me)\s+", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\b(my)\b", "your", text, flags=re.IGNORECASE)
    return text[:1].lower() + text[1:] if text else "hesitate"


def spoken(words: str) -> str:
    """Return what the player says, unquoted, capitalised and ending in punctuation."""
    text = " ".join(words.split()).strip(_QUOTES + " ")
    if len(text) > 1 and text[0] in "'‘" and text[-1] in "'’":
        text = text[1:-1].strip()
    if not text:
        return "…"
    if text[-1] not in ".!?…":
        text += "."
    return _cap(text)


def quest_for(context: NarrationContext) -> str:
    """Return the game's quest: the same for every turn of a game."""
    quests = QUESTS.get(context.genre, QUESTS["fantasy"])
    return quests[context.seed % len(quests)]


def essential(context: NarrationContext) -> str:
    """Return the first sentence of the plot essentials, as a sentence; "" without them."""
    text = first_sentence(context.plot_essentials or "", min_words=1)
    if text and text[-1] not in ".!?…\"”":
        text += "."
    return _cap(text)


def card_line(rng: random.Random, context: NarrationContext) -> str:
    """Return a sentence recalling one of the turn's story cards; "" when it has none.

    A card whose key the action names comes first; otherwise one is drawn.
    """
    if not context.cards:
        return ""
    action = (context.action or "").lower()
    named = [card for card in context.cards if _names(action, card)]
    card = named[0] if named else rng.choice(context.cards)
    detail = first_sentence(card.text, min_words=1)
    return rng.choice(CARD_LINES).format(title=card.title.strip() or "It", detail=detail).strip()


def recollection(rng: random.Random, context: NarrationContext) -> str:
    """Return a look back at one sentence of the summary; "" without one."""
    said = sentences(context.summary or "")
    if not said:
        return ""
    sentence = cut(rng.choice(said), 200)
    if re.match(r"(you|your)\b", sentence, flags=re.IGNORECASE):
        return f"You think back on the road so far: {sentence[:1].lower()}{sentence[1:]}"
    return f"You think back on the road so far. {sentence}"


def _names(text: str, card: StoryCard) -> bool:
    return any(key.strip() and re.search(rf"\b{re.escape(key.strip().lower())}\b", text)
               for key in card.keys)


def _fields(rng: random.Random, world: dict, context: NarrationContext) -> dict[str, str]:
    person, threat = rng.choice(world["people"]), rng.choice(world["threats"])
    return {"place": rng.choice(world["places"]), "thing": rng.choice(world["things"]),
            "person": person, "person_cap": _cap(person), "threat": threat,
            "threat_cap": _cap(threat), "line": rng.choice(LINES),
            "answer": rng.choice(ANSWERS), "quest": quest_for(context),
            "essential": essential(context)}


def _pressure_line(rng: random.Random, context: NarrationContext, turn: int,
                   fields: dict[str, str], quiet: bool = True) -> str:
    start, lines = next((start, lines) for start, lines in reversed(PRESSURE) if turn >= start)
    template = rng.choice(lines if quiet else [line for line in lines if line] or lines)
    if fields["essential"] and "{quest}" in template:
        template = ESSENTIAL_PRESSURE[start]
    return template.format(**fields)


def _join(parts: list[str]) -> str:
    return " ".join(part for part in parts if part)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _clean_prompt(text: str) -> str:
    for quote in _QUOTES:
        text = text.replace(quote, "")
    return " ".join(text.split())[:400]
