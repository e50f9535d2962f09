"""The one module of the central server that imports paho-mqtt (2.x, VERSION2 callbacks).

The central server connects as its own user with a persistent session (``clean_session=False``), so
QoS 1 records that boxes send while it restarts wait at the broker.  paho calls back on its own
network thread: :meth:`CentralLink._on_message` only puts the message on a queue, which the ingest
thread (central.ingest) drains into the database.

A message is acknowledged to the broker (PUBACK) only once it is stored, or deliberately dropped
(:meth:`CentralLink.done`): paho's automatic ack on receipt would let a crash lose what waited in
the queue, records each box had been told were delivered.  What is not acknowledged is sent again
by the broker when the server reconnects (its session is persistent), and ingest stores a record
sent twice once.  The broker holds back what lies beyond its in-flight window meanwhile.  An ack
is sent only on the connection that received the message: after a reconnect the broker sends the
message again, and the id it had may already name another one.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
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
    mid: int = 0  # the broker's packet id, for the ack once stored
    qos: int = 0
    connection: int = 0  # which connection received it: an ack is valid on that one only


class CentralLink:
    """Subscribed to everything boxes send; publishes commands and manifest notices.  ``on_up`` is
    called on paho's thread at each connection, once subscribed: it must return at once."""

    def __init__(self, host: str, port: int, *, username: str | None, password: str | None,
                 client_id: str = CLIENT_ID, on_up: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.host, self.port = host, port
        self.on_up = on_up
        self.inbox: queue.Queue[Incoming] = queue.Queue(maxsize=100_000)
        self.connected = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311,
            manual_ack=True,
        )  # fmt: skip
        self._connection = 0  # counts connections; set on paho's thread, read on the ingest thread
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
        return _publish_all(self._client, messages, retain, timeout)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            logger.error("broker refused the central server: %s", reason)
            return
        self._connection += 1
        client.subscribe([(topic, 1) for topic in central_subscriptions()])
        self.connected.set()
        logger.info("central link up")
        if self.on_up is not None:
            self.on_up()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        logger.warning("central link down: %s", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        incoming = Incoming(message.topic, bytes(message.payload), message.mid, message.qos, self._connection)
        try:
            self.inbox.put_nowait(incoming)
        except queue.Full:  # not acked: the broker sends it again after the next connect
            logger.error("ingest queue full: message on %s left to the broker", message.topic)

    def done(self, messages: Sequence[Incoming]) -> int:
        """Acknowledge ``messages`` (stored, or dropped on purpose) to the broker, which then forgets
        them; those a former connection received are left for the broker to send again.  How many
        were acknowledged.  Thread-safe (paho queues the acks for its network thread)."""
        current, acked = self._connection, 0
        for message in messages:
            if message.qos > 0 and message.connection == current:
                self._client.ack(message.mid, message.qos)
                acked += 1
        return acked


def _publish_all(client: mqtt.Client, messages: Sequence[tuple[str, str]], retain: bool, timeout: float
                 ) -> list[bool]:  # fmt: skip
    infos = [client.publish(topic, payload, qos=1, retain=retain) for topic, payload in messages]
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


def publish_once(host: str, port: int, *, username: str | None, password: str | None,
                 messages: Sequence[tuple[str, str]], retain: bool = False, timeout: float = 5.0
                 ) -> list[bool] | None:  # fmt: skip
    """Connect as a short-lived client of its own (a command on the server's command line), publish
    ``messages`` at QoS 1 and disconnect; one answer per message as :meth:`CentralLink.publish_all`,
    or None if the broker could not be reached (or refused the account) within ``timeout``.

    Its client id is its own and its session clean: the running server's link, connected as
    ``loa-central`` with a persistent session, is neither taken over nor handed its messages.
    """
    up = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{CLIENT_ID}-cli-{os.getpid()}",
                         clean_session=True, protocol=mqtt.MQTTv311)  # fmt: skip
    if username is not None:
        client.username_pw_set(username, password)
    client.on_connect = lambda _c, _u, _f, reason, _p: None if reason.is_failure else up.set()
    deadline = time.monotonic() + timeout
    try:
        client.connect_async(host, port, keepalive=KEEPALIVE)
        client.loop_start()
        if not up.wait(timeout):
            logger.warning("broker %s:%d not reached in %.0f s", host, port, timeout)
            return None
        return _publish_all(client, messages, retain, max(0.0, deadline - time.monotonic()))
    finally:
        client.disconnect()
        client.loop_stop()
