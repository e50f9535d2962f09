"""What every part of the running server shares: config, database, signing key, broker, audio, speech."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Engine

from central.audio_store import AudioStore
from central.config import CentralServerConfig
from central.signing import SigningKey
from central.tts import SpeechEngine


class Publisher(Protocol):
    """Publishes at QoS 1 and says whether the broker took it (central.mqtt_link.CentralLink)."""

    def publish(self, topic: str, payload: str, *, retain: bool = False, timeout: float = 5.0) -> bool: ...

    def publish_all(
        self, messages: Sequence[tuple[str, str]], *, retain: bool = False, timeout: float = 5.0
    ) -> list[bool]:
        """Many at once: each is sent without waiting for the one before."""
        ...


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Central:
    config: CentralServerConfig
    engine: Engine
    key: SigningKey
    publisher: Publisher
    audio: AudioStore
    speech: SpeechEngine
    clock: Callable[[], datetime] = field(default=utc_now)

    def audio_url(self, sha256: str) -> str:
        """Where a box fetches audio: the API's audio route (served with HTTP Range)."""
        return f"{self.config.api_url}/v1/audio/{sha256}"
