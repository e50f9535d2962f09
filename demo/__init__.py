"""``make demo``: the whole stack on one machine, run as an operator and a technician would.

The central server (``loa-central serve`` with its embedded Mosquitto), a sample province of two
communes and three boxes (``loa-agent run`` on gpiozero's mock pins, libVLC writing WAV), and a
bulletin created through the REST API that the boxes fetch, verify and play at its second.

Everything runs as subprocesses through the console scripts (``loa-central``, ``loa-agent``,
``loa``): this package imports neither ``agent`` nor ``central`` (pyproject's import-linter
contracts say so), so it shows only what a user of the installed commands sees.
"""
