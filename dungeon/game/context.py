"""The narrator's context, fitted to its budget.

The budget (``NARRATOR_CONTEXT_CHARS``) counts the characters of every
piece the engine gives the narrator: the plot essentials, the author's
note, the summary, the triggered story cards, the recent turns and the
action.  The memory the player wrote always stays whole (it is bounded at
1000 and 300 characters); past the budget the oldest turns go first, then
the cards triggered only by older turns, and last the summary is cut.
"""

from __future__ import annotations

from dataclasses import replace

from ..narrators.types import NarrationContext

SUMMARY_FLOOR = 200  # characters of summary kept however tight the budget


def context_size(context: NarrationContext) -> int:
    """Return the characters of every piece of ``context`` the budget counts."""
    pieces = [context.plot_essentials, context.authors_note, context.summary, context.action]
    pieces += [f"{card.title}{card.text}" for card in context.cards]
    pieces += [f"{turn.action or ''}{turn.narration}" for turn in context.history]
    return sum(len(piece) for piece in pieces if piece)


def fit(context: NarrationContext, budget: int) -> NarrationContext:
    """Return ``context`` cut to at most ``budget`` characters, as the module says."""
    while context_size(context) > budget and context.history:
        context = replace(context, history=context.history[1:])
    while context_size(context) > budget and context.cards:
        context = replace(context, cards=context.cards[:-1])
    over = context_size(context) - budget
    if over > 0 and context.summary:
        keep = max(SUMMARY_FLOOR, len(context.summary) - over)
        context = replace(context, summary=context.summary[-keep:])
    return context

