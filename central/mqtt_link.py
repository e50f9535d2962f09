"""The one module of the central server that imports paho-mqtt (2.x, VERSION2 callbacks).

The central server connects as its own user with a persistent session (``clean_session=False``), so
QoS 1 records that boxes send while it restarts wait at the broker.  paho calls back on its own
network thread: :meth:`CentralLink._on_message` only puts the message on a queue, which the ingest
thread (central.ingest) drains into the database.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol.topics import central_subscriptions

logger = logging.getLogger(__name__)

KEEPALIVE = 30
CLIENT_ID = "loa-central"


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes


class CentralLink:
    """Subscribed to everything boxes send; publishes commands and manifest notices."""

    def __init__(self, host: str, port: int, *, username: str | None, password: str | None,
                 client_id: str = CLIENT_ID) -> None:  # fmt: skip
        self.host, self.port = host, port
        self.inbox: queue.Queue[Incoming] = queue.Queue(maxsize=100_000)
        self.connected = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(1, 30)
        self._client.max_inflight_messages_set(100)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def start(self) -> None:
        logger.info("central link: connecting to %s:%d", self.host, self.port)
        self._client.connect_async(self.host, self.port, keepalive=KEEPALIVE)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        logger.info("central link stopped")

    def publish(self, topic: str, payload: str, *, retain: bool = False, timeout: float = 5.0) -> bool:
        """Publish at QoS 1 and wait until the broker has it; False if it did not in ``timeout``."""
        return self.publish_all([(topic, payload)], retain=retain, timeout=timeout)[0]

    def publish_all(
        self, messages: Sequence[tuple[str, str]], *, retain: bool = False, timeout: float = 5.0
    ) -> list[bool]:
        """Publish each ``(topic, payload)`` at QoS 1 without waiting between them, then wait (``timeout``
        in all) until the broker has each; one answer per message: False if the broker did not take it."""
        infos = [self._client.publish(topic, payload, qos=1, retain=retain) for topic, payload in messages]
        deadline = time.monotonic() + timeout
        taken = []
        for info in infos:
            if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
                taken.append(False)
                continue
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                taken.append(False)
                continue
            taken.append(info.is_published())
        return taken

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            logger.error("broker refused the central server: %s", reason)
            return
        client.subscribe([(topic, 1) for topic in central_subscriptions()])
        self.connected.set()
        logger.info("central link up")

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        logger.warning("central link down: %s", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self.inbox.put_nowait(Incoming(message.topic, bytes(message.payload)))
        except queue.Full:
            logger.error("ingest queue full: message on %s dropped", message.topic)
