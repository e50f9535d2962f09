"""The embedded broker's TLS listener: a real agent registered with ``device add`` links over
``mqtts://`` to the real Mosquitto, trusting the province's own CA; a client that does not trust that
CA is refused before any password is sent.  The certificates are made here with ``cryptography``."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.control import request
from agent.status import render
from central.broker import BrokerSupervisor
from central.config import load_central_config
from tests.agent_harness import running_agent, write_config
from tests.central_harness import initialized, loa_central
from tests.central_stand_in import wait_linked
from tests.mqtt_broker import free_port
from tests.test_central_broker import wait_listening

DEVICE = "test-box-01"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def province_ca_and_broker_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A CA of the province's own, and the broker's certificate for 127.0.0.1 signed by it: the CA,
    the broker's certificate chain and its key, as PEM files."""
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    province = _name("Loa test province CA")
    ca = (
        x509.CertificateBuilder().subject_name(province).issuer_name(province)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return (
        _pem(directory / "province-ca.pem", ca.public_bytes(pem)),
        _pem(directory / "fullchain.pem", cert.public_bytes(pem) + ca.public_bytes(pem)),
        _pem(directory / "privkey.pem", key_pem),
    )


@pytest.fixture
def tls_central(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """An initialized central with a TLS listener and its embedded broker running; the config's path
    and the TLS port."""
    ca, chain, key = province_ca_and_broker_cert(tmp_path)
    tls_port = free_port()
    tls = (
        f", tls_listen: 127.0.0.1:{tls_port}, tls_cert_file: {chain}, tls_key_file: {key}, box_ca_file: {ca}"
    )
    config_path = initialized(tmp_path / "central", mqtt_port=free_port(), mqtt_extra=tls)
    supervisor = BrokerSupervisor(load_central_config(config_path))
    supervisor.start()
    wait_listening(tls_port)
    try:
        yield config_path, tls_port
    finally:
        supervisor.stop()


def test_a_box_links_over_tls_trusting_the_provinces_ca(
    tls_central: tuple[Path, int], tmp_path: Path
) -> None:
    config, tls_port = tls_central
    box = tmp_path / "box"
    loa_central(config, "device", "add", DEVICE, "--province", "tinh", "--commune", "xa-test",
                "--out", str(box), "--box-dir", str(box))  # fmt: skip
    central_section = (box / "central.yaml").read_text(encoding="utf-8")
    assert f"mqtt_url: mqtts://127.0.0.1:{tls_port}" in central_section
    assert f"ca_file: {box / 'central-broker-ca.pem'}" in central_section
    with running_agent(write_config(box, extra=central_section)) as running:
        wait_linked(running)


def test_a_client_that_does_not_trust_the_brokers_ca_is_refused(tls_central: tuple[Path, int]) -> None:
    _, tls_port = tls_central
    context = ssl.create_default_context()  # the system's CAs only: not the province's
    with (
        socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1")


@pytest.mark.parametrize("wrong", ["no CA", "no broker"])
def test_a_box_that_cannot_connect_says_why_in_loa_status(
    tls_central: tuple[Path, int], tmp_path: Path, wrong: str
) -> None:
    """A crew must tell an untrusted certificate (a missing central.ca_file) from a broker that is
    not there: the status board says why the link is down, in Vietnamese too."""
    config, tls_port = tls_central
    box = tmp_path / "box"
    loa_central(config, "device", "add", DEVICE, "--province", "tinh", "--commune", "xa-test",
                "--out", str(box), "--box-dir", str(box))  # fmt: skip
    section = (box / "central.yaml").read_text(encoding="utf-8")
    if wrong == "no CA":  # the technician did not copy the CA, or left ca_file out
        section = "".join(line for line in section.splitlines(keepends=True) if "ca_file" not in line)
    else:
        section = section.replace(f":{tls_port}", f":{free_port()}")
    with running_agent(write_config(box, extra=section)) as running:
        link = running.agent.link
        assert link is not None
        running.wait_for(lambda: link.status()["why_down"] is not None, 10)
        status = request(running.config.control.socket, "status")
    why = status["link"]["why_down"]
    board = render(status, running.config.device.timezone, "vi")
    if wrong == "no CA":
        assert why.startswith("cannot connect: the broker's TLS certificate is not trusted (")
        assert "chứng chỉ TLS của máy chủ không được tin cậy" in board
    else:
        assert why == "cannot connect: connection refused: is the broker running on that port?"
        assert "lý do: không kết nối được: máy chủ từ chối kết nối" in board
    assert not status["link"]["connected"]
