"""The foundation every room stands on: the project's errors, units and findings.

A leaf: it imports nothing of ours, so ``scheduler``, ``drivers``, ``fm_receiver``, ``protocol``,
``agent`` and ``central`` can all use it without cycles (docs/ARCHITECTURE.md, enforced by
import-linter in ``make test``).
"""
