"""The 4G modem's AT client (real pyserial) against a fake modem on a pseudo-terminal: answers,
garbage, silence and unplugging; and the probe thread that keeps asking whatever happens."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.modem_probe import ModemProbe, ModemState
from drivers.fake_modem import FakeModemDevice
from drivers.modem import Modem, ModemError, ModemReading, csq_to_dbm, parse_cops, parse_csq, parse_reg
from foundation.errors import HardwareError


@pytest.fixture
def device() -> Iterator[FakeModemDevice]:
    fake = FakeModemDevice().start()
    yield fake
    fake.stop()


@pytest.fixture
def modem(device: FakeModemDevice) -> Iterator[Modem]:
    client = Modem(device.port, timeout_s=0.3, retries=1)
    yield client
    client.close()


def test_signal_registration_and_operator(modem: Modem, device: FakeModemDevice) -> None:
    assert modem.read() == ModemReading(21, -71, "home", "Viettel", "LTE")
    assert device.received == ["AT+CSQ", "AT+CREG?", "AT+CEREG?", "AT+COPS?"]
    device.csq, device.creg, device.cereg, device.operator = 99, 5, 2, None
    reading = modem.read()
    assert reading == ModemReading(99, None, "roaming", None, None)
    assert reading.registered  # on the circuit-switched network while LTE searches


def test_a_2g_modem_that_refuses_cereg_is_registered_by_creg(modem: Modem, device: FakeModemDevice) -> None:
    device.cereg, device.creg = None, 1
    assert modem.read().registration == "home"
    device.creg = 3
    reading = modem.read()
    assert (reading.registration, reading.registered) == ("denied", False)


@pytest.mark.parametrize(("index", "dbm"), [(0, -113), (1, -111), (2, -109), (15, -83), (30, -53), (31, -51)])
def test_csq_follows_3gpp_27_007(index: int, dbm: int) -> None:
    assert csq_to_dbm(index) == dbm


def test_csq_99_is_unknown_and_out_of_range_is_refused() -> None:
    assert csq_to_dbm(99) is None
    for index in (-1, 32, 98, 100):
        with pytest.raises(ValueError, match=r"not 0\.\.31 or 99"):
            csq_to_dbm(index)


def test_garbage_answers_are_errors_that_name_the_port(modem: Modem, device: FakeModemDevice) -> None:
    device.mode = "garbage"  # OK, after malformed lines
    with pytest.raises(ModemError, match=rf"modem on {device.port} answered garbage to 'AT\+CSQ'"):
        modem.read()
    device.mode = "noise"  # bytes and never an OK: a wrong baud rate
    with pytest.raises(ModemError, match=r"answered garbage to 'AT\+CSQ'.* and no OK - check the baud rate"):
        modem.read()
    device.mode = "answer"
    assert modem.read().rssi_dbm == -71  # the port was opened again, the modem is fine


def test_a_silent_modem_fails_after_its_retries(modem: Modem, device: FakeModemDevice) -> None:
    modem.read()
    device.mode = "silent"
    received = len(device.received)
    with pytest.raises(ModemError, match=r"does not answer 'AT\+CSQ' - check its power"):
        modem.read()
    assert device.received[received:] == ["AT+CSQ", "AT+CSQ"]  # the first try and one retry


def test_a_refused_command_is_an_error(modem: Modem) -> None:
    with pytest.raises(ModemError, match=r"'AT\+BOGUS' refused \(ERROR\)"):
        modem.command("AT+BOGUS")


def test_unplugged_and_plugged_back(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB2"  # like udev's stable name: it follows the modem
    first = FakeModemDevice(csq=10).start()
    os.symlink(first.port, port)
    modem = Modem(str(port), timeout_s=0.3, retries=0)
    try:
        assert modem.read().rssi_dbm == -93
        first.unplug()
        port.unlink()
        with pytest.raises(ModemError, match=r"I/O error on 'AT\+CSQ'.*unplugged"):
            modem.read()
        with pytest.raises(ModemError, match=f"modem port {port} not found - is the modem plugged in"):
            modem.read()
        second = FakeModemDevice(csq=31).start()
        os.symlink(second.port, port)
        try:
            assert modem.read().rssi_dbm == -51
        finally:
            second.stop()
    finally:
        modem.close()
        first.stop()


def test_a_modem_error_is_a_hardware_error(tmp_path: Path) -> None:
    with pytest.raises(HardwareError):
        Modem(str(tmp_path / "nothing")).read()


# -- the parsers take whatever a modem sends -----------------------------------------------------


@given(st.text(max_size=60))
def test_parsers_refuse_anything_with_a_value_error_only(text: str) -> None:
    for parse in (parse_csq, parse_cops, lambda line: parse_reg(line, "+CREG:")):
        for line in (text, f"+CSQ: {text}", f"+COPS: {text}", f"+CREG: {text}"):
            with contextlib.suppress(ValueError):
                parse(line)


@given(st.integers(0, 31), st.integers(0, 99))
def test_any_valid_csq_line_reads_back(index: int, ber: int) -> None:
    assert parse_csq(f"+CSQ: {index},{ber}") == index
    assert -113 <= (csq_to_dbm(index) or 0) <= -51


def test_operator_and_access_technology() -> None:
    assert parse_cops('+COPS: 0,0,"Viettel",7') == ("Viettel", "LTE")
    assert parse_cops('+COPS: 0,2,"45204",2') == ("45204", "UMTS")
    assert parse_cops("+COPS: 0") == (None, None)
    with pytest.raises(ValueError):
        parse_cops("+COPS: 0,0")


# -- the probe thread --------------------------------------------------------------------------------


def wait_for(probe: ModemProbe, check: Callable[[ModemState], bool], timeout: float = 5.0) -> ModemState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = probe.latest()
        if check(state):
            return state
        time.sleep(0.02)
    raise AssertionError(f"probe state not reached: {probe.latest()}")


def test_the_probe_survives_silence_garbage_and_unplugging(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB2"
    device = FakeModemDevice().start()
    os.symlink(device.port, port)
    probe = ModemProbe(Modem(str(port), timeout_s=0.2, retries=0), interval=0.05)
    probe.start()
    try:
        state = wait_for(probe, lambda s: s.reading is not None)
        assert state.error is None and state.reading is not None and state.reading.rssi_dbm == -71
        for mode, words in [("silent", "does not answer"), ("garbage", "answered garbage")]:
            device.mode = mode
            state = wait_for(probe, lambda s, w=words: s.error is not None and w in s.error)  # type: ignore[misc]
            assert state.reading is not None  # the last good answer is kept, the error said
            device.mode = "answer"
            wait_for(probe, lambda s: s.error is None)
        device.unplug()
        port.unlink()
        polls = wait_for(probe, lambda s: s.error is not None and "not found" in s.error).polls
        wait_for(probe, lambda s: s.polls >= polls + 3)  # it keeps asking, nothing crashed
        assert probe.alive
    finally:
        probe.stop()
        device.stop()
    assert not probe.alive
