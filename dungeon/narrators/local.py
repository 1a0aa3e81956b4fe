"""The offline narrator: a genre-flavoured story that answers the player, with no key.

It reads the player's action for a verb and an object, and answers from
phrase tables per genre, choosing with a random generator seeded by the game's
seed, the turn number and the action, so the same game replays the same story.
"""

from __future__ import annotations

import random
import re

import dungeon

from .types import Narration, NarrationContext

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

LINES = ["You're not the first to come asking.", "Keep your voice down. They listen.",
         "I'll help you, but it will cost you.", "Turn back while you still can.",
         "I knew you would come. Follow me."]

_WORD = re.compile(r"[a-z']+")


@dungeon.hookimpl
def register_narrators(register):
    """Register the offline narrator."""
    register(LocalNarrator())


class LocalNarrator:
    """Writes the story from phrase tables; needs no network and no key."""

    name = "local"

    def narrate(self, context: NarrationContext) -> Narration:
        """Return the next passage: an opening, or an answer to the player's action."""
        rng = random.Random(f"{context.seed}:{context.turn}:{context.action}")
        world = WORLDS.get(context.genre, WORLDS["fantasy"])
        if context.action is None:
            text = self._opening(rng, world, context)
        else:
            text = self._answer(rng, world, context)
        return Narration(text, _image_prompt(text))

    def _opening(self, rng: random.Random, world: dict, context: NarrationContext) -> str:
        place, person, thing = (rng.choice(world[k]) for k in ("places", "people", "things"))
        return (f"{context.title}. You come to your senses. Around you: {place}. "
                f"{rng.choice(world['senses'])} You have one purpose: to "
                f"{quest_for(context)}. {_cap(person)} watches you from the shadows, and at "
                f"your feet lies {thing}. What do you do?")

    def _answer(self, rng: random.Random, world: dict, context: NarrationContext) -> str:
        action = context.action or ""
        kind = action_kind(action)
        person, threat = rng.choice(world["people"]), rng.choice(world["threats"])
        fields = {"place": rng.choice(world["places"]), "thing": rng.choice(world["things"]),
                  "person": person, "person_cap": _cap(person), "threat": threat,
                  "threat_cap": _cap(threat), "line": rng.choice(LINES),
                  "quest": quest_for(context)}
        consequence = rng.choice(OUTCOMES[kind]).format(**fields)
        pressure = rng.choice(_pressure(context.turn)).format(**fields)
        parts = [f"You {second_person(action)}.", consequence, rng.choice(world["senses"]),
                 pressure, "What do you do next?"]
        return " ".join(part for part in parts if part)


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


def quest_for(context: NarrationContext) -> str:
    """Return the game's quest: the same for every turn of a game."""
    quests = QUESTS.get(context.genre, QUESTS["fantasy"])
    return quests[context.seed % len(quests)]


def _pressure(turn: int) -> list[str]:
    return next(lines for start, lines in reversed(PRESSURE) if turn >= start)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _image_prompt(text: str) -> str:
    first = text.split(". ")[:2]
    return ". ".join(first).replace('"', "")[:400]
