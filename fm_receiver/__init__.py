"""FM receiver: turns a broadcast station into relayable audio, and says when it must not be relayed.

- :mod:`fm_receiver.dsp`: ``FmDemodulator`` (IQ → 48 kHz mono, 50 µs de-emphasis), ``iq_from_bytes``.
- :mod:`fm_receiver.quality`: channel level (dBFS), carrier-to-noise ratio, ``CarrierDetector``.
- Sources behind :class:`fm_receiver.iq_source.IqSource`: ``iq_file``, ``rtlsdr_source``;
  the analog tuner module is driven by ``serial_tuner`` + ``tuner_receiver``.
- :mod:`fm_receiver.receiver`: ``FmReceiver``, a supervised reader feeding a ``PcmStream``.
- :mod:`fm_receiver.relay_policy`: ``should_relay`` (pure).
- :mod:`fm_receiver.cli`: ``loa fm demod`` and ``loa fm scan``.

See docs/FM.md.
"""
