"""The one module that imports paho-mqtt (2.x, VERSION2 callbacks).

paho calls back on its own network thread: each callback here only hands an event to the agent's
queue (``post``) and returns, except ``on_connect``, which also queues the subscriptions and the
retained ``online`` status (non-blocking calls) so that a reconnect is complete by itself.

Lessons from a vendor client (docs/CONTEXT): the client id is the device id and the session is
persistent (``clean_session=False``), so QoS 1 commands sent while the box was offline are
delivered when it returns; the message handler is set once, never re-added on reconnect, so a
command is never handled twice.  Every connection has a new session number: the last will
(``offline``) names it, and the ``online`` published on connecting names the same one.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import CentralConfig
from protocol.messages import StatusMessage
from protocol.topics import Kind, device_subscriptions, device_topic

logger = logging.getLogger(__name__)

KEEPALIVE = 30  # seconds: a dead 4G link is noticed within about 1.5 times this
RECONNECT_MIN, RECONNECT_MAX = 1, 60  # seconds of backoff between attempts


@dataclass(frozen=True)
class LinkUp:
    session: int


@dataclass(frozen=True)
class LinkDown:
    reason: str


@dataclass(frozen=True)
class LinkMessage:
    topic: str
    payload: bytes


@dataclass(frozen=True)
class Published:
    mid: int  # the broker acknowledged this QoS 1 message


LINK_EVENTS = (LinkUp, LinkDown, LinkMessage, Published)


class MqttClient:
    """Connects in the background (``loop_start``), reconnects with backoff, posts what happens."""

    def __init__(
        self,
        device_id: str,
        central: CentralConfig,
        post: Callable[[object], None],
        *,
        last_session: int,
        password: str | None = None,
    ) -> None:
        self.device_id = device_id
        self.central = central
        self._post = post
        self.session = last_session  # the session of the current (or last) connection
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=device_id, clean_session=False, protocol=mqtt.MQTTv311
        )
        if central.username is not None:
            self._client.username_pw_set(central.username, password)
        if central.tls:
            ca = str(central.ca_file) if central.ca_file is not None else None
            self._client.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
        self._client.reconnect_delay_set(RECONNECT_MIN, RECONNECT_MAX)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_message = self._on_message  # once: never re-added on a reconnect
        self._client.on_publish = self._on_publish
        self._arm_will()

    # -- lifecycle (main thread) -----------------------------------------------------------------

    def start(self) -> None:
        host, port = self.central.host_port
        logger.info("central link: connecting to %s:%d as %s", host, port, self.device_id)
        self._client.connect_async(host, port, keepalive=KEEPALIVE)
        self._client.loop_start()

    def stop(self) -> None:
        """Say ``offline`` for this session, then disconnect (the broker drops the will)."""
        if self._client.is_connected():
            info = self._publish_status(online=False)
            info.wait_for_publish(timeout=2)
        self._client.disconnect()
        self._client.loop_stop()
        logger.info("central link stopped")

    def publish(self, topic: str, payload: str, *, qos: int = 1, retain: bool = False) -> int | None:
        """Queue a message; its ``mid`` (a :class:`Published` follows when the broker has it), or
        None when the link is down (nothing was queued: the caller sends it again later)."""
        if not self._client.is_connected():
            return None
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        return int(info.mid)

    def republish_online(self) -> None:
        if self._client.is_connected():
            self._publish_status(online=True)

    # -- paho's thread ---------------------------------------------------------------------------

    def _arm_will(self) -> None:
        """The will for the next connection: ``offline`` naming the session it will have."""
        will = StatusMessage(False, self.session + 1, datetime.now(UTC))
        self._client.will_set(device_topic(self.device_id, Kind.STATUS), will.to_json(), qos=1, retain=True)

    def _publish_status(self, *, online: bool) -> mqtt.MQTTMessageInfo:
        status = StatusMessage(online, self.session, datetime.now(UTC)).to_json()
        return self._client.publish(device_topic(self.device_id, Kind.STATUS), status, qos=1, retain=True)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._post(LinkDown(f"broker refused the connection: {reason}"))
            return
        self.session += 1
        groups = frozenset(self.central.groups)
        client.subscribe([(topic, 1) for topic in device_subscriptions(self.device_id, groups)])
        self._publish_status(online=True)
        self._post(LinkUp(self.session))

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._arm_will()  # the next connection is a new session
        self._post(LinkDown(f"disconnected: {reason}"))

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        """paho calls this from the ``except OSError`` around its (re)connect, so the error is the
        one being handled: it says why the box cannot reach the broker (a crew needs to know an
        untrusted certificate from a network that is down)."""
        self._post(LinkDown(f"cannot connect: {connect_error(sys.exc_info()[1])}"))

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._post(LinkMessage(message.topic, bytes(message.payload)))

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        self._post(Published(mid))


def connect_error(error: BaseException | None) -> str:
    """Why a connection to the broker failed, in a crew's terms (the agent's own English words)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"the broker's TLS certificate is not trusted ({error.verify_message}): check central.ca_file"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({error.reason or error}): is the broker's port a TLS one?"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused: is the broker running on that port?"
    if isinstance(error, socket.gaierror):
        return "the broker's host name does not resolve (DNS, or no network)"
    if isinstance(error, TimeoutError | socket.timeout):
        return "no answer from the broker (no network, or a firewall)"
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    return "unknown error"
