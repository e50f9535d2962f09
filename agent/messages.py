"""The crew's words: what ``loa`` prints at the pole, in Vietnamese (the default) or English.

Each language is a catalogue (``agent/messages_vi.py``, ``agent/messages_en.py``): a dict from a
message id to a ``str.format`` template with named fields, plus a few patterns that put the
agent's own free-text reasons (a clock reason, a fault's subject) into that language.  No gettext
build step: a catalogue is Python, reviewed like code, and ``tests/test_crew_words.py`` checks
that both catalogues have the same ids with the same fields, in NFC Vietnamese.

    say = words("vi")
    say("playing.nothing")                      # "không phát gì"
    say("agent.running", since="2026-11-26 06:00:00")
    say.known(f"kind.{kind}", kind)             # an open set of codes: the raw code if unknown

To add words: add the id to both catalogues (same fields), then call ``say(id, ...)``.  To add a
line to ``loa status``: a ``label.<name>`` in both catalogues (the column of every line follows the
longest label), then ``lines.add("<name>", lines.say("<id>", ...))`` in ``agent.status.render``
(``lines.more(...)`` for a line that goes on from the one above).  An open set of codes (alarm
codes, event kinds) reads ``say.known(f"alarm.{code}", code)``: the words where the catalogue has
them, the code where it does not yet.  What an alarm means (``alarm.<code>``) is only in
messages_vi.py: in English ``loa status`` shows the words of ``agent/alarms.py`` itself.  The
agent's own English reasons are put into Vietnamese by a pattern in ``messages_vi.REASONS``, through
``say.reason(text)``.

The language is ``--lang``, else ``$LOA_LANG``, else Vietnamese.  It is a person's choice, not a
box's, so it is not in the agent's config.  ``--json`` output never goes through here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from agent import messages_en, messages_vi
from foundation.errors import UsageError

DEFAULT_LANGUAGE = "vi"
LANGUAGE_ENV = "LOA_LANG"
CATALOGUES: dict[str, Mapping[str, str]] = {"vi": messages_vi.MESSAGES, "en": messages_en.MESSAGES}
REASONS: dict[str, tuple[tuple[str, str], ...]] = {"vi": messages_vi.REASONS, "en": messages_en.REASONS}
LANGUAGES = tuple(CATALOGUES)


@dataclass(frozen=True)
class Words:
    """One language's catalogue; calling it formats a message."""

    language: str
    messages: Mapping[str, str]
    reasons: tuple[tuple[re.Pattern[str], str], ...]

    def __call__(self, key: str, /, **fields: object) -> str:
        template = self.messages.get(key)
        if template is None:  # a word missing here must not cost the crew the whole status board
            template = messages_en.MESSAGES.get(key, key)
        return template.format(**fields)

    def known(self, key: str, fallback: str, /, **fields: object) -> str:
        """The message ``key`` if this catalogue has it, else ``fallback`` (codes from an open set)."""
        return self(key, **fields) if key in self.messages else fallback

    def reason(self, text: str) -> str:
        """The agent's free-text ``text`` in this language where a pattern knows it, else as it is."""
        for pattern, template in self.reasons:
            found = pattern.fullmatch(text)
            if found is not None:
                return template.format(**{k: self.reason(v) for k, v in found.groupdict().items()})
        return text

    @property
    def label_width(self) -> int:
        return max(len(text) for key, text in self.messages.items() if key.startswith("label."))

    def label(self, key: str) -> str:
        """A status line's label, padded so every line's text starts in the same column."""
        return f"{self(f'label.{key}'):<{self.label_width}}"


def words(language: str) -> Words:
    if language not in CATALOGUES:
        raise UsageError(f"language {language!r} is not one of {', '.join(LANGUAGES)}")
    patterns = tuple((re.compile(pattern, re.S), template) for pattern, template in REASONS[language])
    return Words(language, CATALOGUES[language], patterns)


def choose_language(asked: str | None, environ: Mapping[str, str]) -> str:
    """``--lang``, else ``$LOA_LANG`` (``vi``, ``en``, or a locale such as ``en_US.UTF-8``), else vi."""
    if asked:
        return _language(asked, "--lang")
    from_env = environ.get(LANGUAGE_ENV, "").strip()
    if from_env:
        return _language(from_env, LANGUAGE_ENV)
    return DEFAULT_LANGUAGE


def _language(text: str, where: str) -> str:
    code = re.split(r"[_.@-]", text.strip().lower(), maxsplit=1)[0]
    if code not in CATALOGUES:
        raise UsageError(f"{where} {text!r}: expected one of {', '.join(LANGUAGES)} (vi: Tiếng Việt)")
    return code
