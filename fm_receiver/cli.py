"""Field tools: ``loa fm demod`` (a recording to WAV + quality) and ``loa fm scan`` (the FM band).

``add_fm_commands(subparsers)`` plugs them into the ``loa`` parser; each handler takes the parsed
arguments and returns an exit code.  Errors are LoaError subclasses, mapped to exit codes by the
caller.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import wave
from pathlib import Path
from typing import Any

from fm_receiver.dsp import IQ_FORMATS, FmDemodulator, FmParameterError
from fm_receiver.fake_rtlsdr import FakeRtlSdr
from fm_receiver.iq_file import IqFileSource
from fm_receiver.iq_source import SourceFinished
from fm_receiver.pcm_stream import to_s16le
from fm_receiver.quality import CarrierDetector, ChannelMeasurement, level_dbfs
from fm_receiver.rtlsdr_source import RtlSdrDevice, open_rtlsdr_device
from fm_receiver.scan import scan_band
from foundation.errors import LoaError, report
from foundation.units import parse_frequency

__all__ = ["add_fm_commands", "demodulate_file", "main", "parse_hz"]


def parse_hz(text: str) -> float:
    """``-250000``, ``250kHz``, ``99.1MHz``, ``1.024M`` → Hz (the command line's frequency grammar)."""
    try:
        return float(parse_frequency(text, signed=True, shorthand=True))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a frequency: write e.g. -250000, 250kHz or 99.1MHz"
        ) from None


def _parse_rate(text: str) -> int:
    return round(parse_hz(text))


def _parse_deemphasis(text: str) -> float:
    value = text.strip().lower().removesuffix("us").removesuffix("µs")
    if value not in ("50", "75"):
        raise argparse.ArgumentTypeError(f"de-emphasis {text!r}: expected 50us (Vietnam, Europe) or 75us")
    return float(value)


def add_fm_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``fm demod`` and ``fm scan`` to the ``loa`` command line."""
    fm = subparsers.add_parser("fm", help="FM receiver field tools")
    commands = fm.add_subparsers(dest="fm_command", required=True)
    demod = commands.add_parser("demod", help="demodulate an IQ recording to a WAV file")
    demod.add_argument("--input", required=True, type=Path, help="IQ recording (e.g. from rtl_sdr)")
    demod.add_argument("--format", required=True, choices=sorted(IQ_FORMATS), dest="iq_format")
    demod.add_argument("--sample-rate", required=True, type=_parse_rate, help="e.g. 1024000 or 1.024MHz")
    demod.add_argument(
        "--offset", required=True, type=parse_hz, help="station minus tuned centre, e.g. 250kHz"
    )
    demod.add_argument("--out", required=True, type=Path, help="WAV file to write (48 kHz mono)")
    demod.add_argument("--deemphasis", type=_parse_deemphasis, default=50.0, help="50us (default) or 75us")
    demod.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    demod.set_defaults(func=_cmd_demod)
    scan = commands.add_parser("scan", help="list FM carriers with an RTL-SDR dongle")
    scan.add_argument("--start", type=parse_hz, default=87.5e6, help="default 87.5MHz")
    scan.add_argument("--stop", type=parse_hz, default=108e6, help="default 108MHz")
    scan.add_argument("--device-index", type=int, default=0)
    scan.add_argument("--gain", default="auto", help="tuner gain in dB, or auto")
    scan.add_argument("--threshold", type=float, default=10.0, help="dB above the noise floor")
    scan.add_argument("--simulate", metavar="F:LEVEL,...", help="fake dongle with stations, e.g. 99.1MHz:-20")
    scan.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    scan.set_defaults(func=_cmd_scan)


def demodulate_file(
    path: Path, iq_format: str, sample_rate: int, offset_hz: float, out: Path, deemphasis_us: float = 50.0
) -> dict[str, Any]:
    """Demodulate a recording to ``out`` (WAV, 48 kHz mono s16) and summarise its quality."""
    if not path.is_file():
        raise FmParameterError(f"fm demod: input {path} does not exist")
    demod = FmDemodulator(sample_rate, offset_hz, deemphasis_us=deemphasis_us)
    # A recording from the pole may last only a second or two: judge it with short holds, not the
    # live relay's (which guard against flapping over minutes of programme).
    detector = CarrierDetector(open_hold_s=0.2, close_hold_s=0.2)
    source = IqFileSource(path, iq_format, sample_rate, offset_hz)
    windows: list[ChannelMeasurement] = []
    present_s = 0.0
    source.open()
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(demod.audio_rate)
        while True:
            try:
                block = source.read(timeout=1.0)
            except SourceFinished:
                break
            if block is None:
                continue
            wav.writeframes(to_s16le(demod.process(block)))
            measurement = demod.meter.take()
            if measurement is not None:
                windows.append(measurement)
                detector.update(measurement.level_dbfs, measurement.snr_db, measurement.duration_s)
                present_s += measurement.duration_s if detector.present else 0.0
        audio_s = wav.getnframes() / demod.audio_rate
    return _summary(windows, present_s, audio_s, sample_rate, offset_hz, deemphasis_us, out)


def _summary(
    windows: list[ChannelMeasurement],
    present_s: float,
    audio_s: float,
    sample_rate: int,
    offset_hz: float,
    deemphasis_us: float,
    out: Path,
) -> dict[str, Any]:
    duration = sum(w.duration_s for w in windows)
    energy = sum(10 ** (w.level_dbfs / 10) * w.duration_s for w in windows)
    return {
        "carrier": present_s > 0,
        "carrier_fraction": round(present_s / duration, 3) if duration else 0.0,
        "rssi_dbfs": round(level_dbfs(energy / duration), 1) if duration else level_dbfs(0.0),
        "snr_db": round(statistics.median(w.snr_db for w in windows), 1) if windows else -60.0,
        "duration_s": round(duration, 3),
        "audio_s": round(audio_s, 3),
        "sample_rate": sample_rate,
        "offset_hz": offset_hz,
        "deemphasis_us": deemphasis_us,
        "out": str(out),
    }


def _cmd_demod(args: argparse.Namespace) -> int:
    summary = demodulate_file(
        args.input, args.iq_format, args.sample_rate, args.offset, args.out, args.deemphasis
    )
    if args.json:
        print(json.dumps(summary))
    else:
        state = "present" if summary["carrier"] else "ABSENT"
        print(f"carrier {state} ({summary['carrier_fraction']:.0%} of the time)")
        print(f"level {summary['rssi_dbfs']} dBFS, SNR {summary['snr_db']} dB")
        print(f"{summary['duration_s']} s of IQ -> {summary['out']} ({summary['audio_s']} s of audio)")
    return 0


def _simulated_device(spec: str) -> FakeRtlSdr:
    stations: dict[float, float] = {}
    for item in spec.split(","):
        freq, sep, level = item.partition(":")
        try:
            stations[parse_hz(freq)] = float(level) if sep else -20.0
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise FmParameterError(f"fm scan --simulate: {item!r}: expected FREQ[:LEVEL_DBFS]") from exc
    return FakeRtlSdr(stations, noise_dbfs=-50.0, realtime=False)


def _cmd_scan(args: argparse.Namespace) -> int:
    gain: float | str = args.gain if args.gain == "auto" else float(args.gain)
    device: RtlSdrDevice = (
        _simulated_device(args.simulate) if args.simulate else open_rtlsdr_device(args.device_index)
    )
    try:
        hits = scan_band(
            device,
            start_hz=round(args.start),
            stop_hz=round(args.stop),
            gain=gain,
            threshold_db=args.threshold,
        )
    finally:
        device.close()
    if args.json:
        rows = [
            {"frequency_hz": h.frequency_hz, "level_dbfs": h.level_dbfs, "above_floor_db": h.above_floor_db}
            for h in hits
        ]
        print(json.dumps({"carriers": rows}))
        return 0
    if not hits:
        print("no carriers found", file=sys.stderr)
    for hit in hits:
        print(f"{hit.frequency_hz / 1e6:7.1f} MHz  {hit.level_dbfs:6.1f} dBFS  +{hit.above_floor_db:.1f} dB")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m fm_receiver.cli fm demod ...``: the same tools without the agent installed."""
    parser = argparse.ArgumentParser(prog="python -m fm_receiver.cli")
    add_fm_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except LoaError as exc:
        return report("loa fm", exc)
    return code


if __name__ == "__main__":
    sys.exit(main())
