"""Text bulletins become speech behind one small interface, so a better engine can replace espeak-ng."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Protocol

from foundation.errors import LoaError

MAX_TEXT_CHARS = 20_000
TIMEOUT = 120.0  # seconds: espeak-ng speaks far faster than real time


class SpeechError(LoaError, RuntimeError):
    """The speech engine could not turn the text into audio."""


class SpeechEngine(Protocol):
    """Writes ``text`` as speech into the WAV file ``out``."""

    def synthesize(self, text: str, out: Path) -> None: ...


class EspeakNg:
    """espeak-ng with a voice (``vi`` for Vietnamese), writing a WAV file; the text goes on stdin."""

    def __init__(self, voice: str = "vi", program: str | None = None) -> None:
        self.voice = voice
        self.program = program or shutil.which("espeak-ng") or "/usr/bin/espeak-ng"

    def synthesize(self, text: str, out: Path) -> None:
        if not text.strip() or len(text) > MAX_TEXT_CHARS:
            raise SpeechError(f"text of {len(text)} characters: expected 1 to {MAX_TEXT_CHARS}")
        command = [self.program, "-v", self.voice, "-w", str(out), "--stdin"]
        try:
            done = subprocess.run(command, input=text.encode("utf-8"), capture_output=True, timeout=TIMEOUT,
                                  check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SpeechError(f"espeak-ng: {type(error).__name__}: {error}") from None
        if done.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
            message = done.stderr.decode("utf-8", "replace").strip()[:200]
            raise SpeechError(f"espeak-ng -v {self.voice} failed ({done.returncode}): {message}")
