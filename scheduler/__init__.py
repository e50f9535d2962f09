"""Loa's pure scheduler: schedule items, recurrence, and the state machine that resolves them.

Nothing here does I/O or reads a clock: every call is given ``now`` (an aware datetime). The agent
feeds it a parsed schedule, calls ``Engine.tick`` when woken, carries out the returned actions
(``Start``, ``Interrupt``, ``Record``), powers ``Engine.zones_wanted`` and sleeps until
``Engine.next_wakeup``. See docs/SCHEDULING.md for the file format and the rules.
"""

from scheduler.actions import Action, Interrupt, Outcome, Record, Start
from scheduler.engine import Engine
from scheduler.items import Finding, Item, Level, parse_items
from scheduler.recurrence import Occurrence, expand

__all__ = [
    "Action",
    "Engine",
    "Finding",
    "Interrupt",
    "Item",
    "Level",
    "Occurrence",
    "Outcome",
    "Record",
    "Start",
    "expand",
    "parse_items",
]
