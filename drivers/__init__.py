"""Hardware drivers: each behind a small interface with a real and a fake implementation.

* :mod:`drivers.player` — the :class:`~drivers.player.Player` contract and its events;
  :func:`~drivers.player.make_player` picks :mod:`drivers.vlc_player` (libVLC, the only module
  importing python-vlc) or :mod:`drivers.null_player` (silent, same timing) by name.
* :mod:`drivers.gpio` — amplifier relays and the status LED (the only module importing gpiozero);
  the pin factory is chosen by name, ``mock`` being gpiozero's own MockFactory.
* :mod:`drivers.wav` — WAV duration and a WAV framing for live PCM (standard library only).
* :mod:`drivers.wav_samples` — WAV reading, writing and measuring with numpy (tests, benchmarks).

Drivers never touch the agent's state: they post events to a sink and return.
"""
