"""Loa benchmarks."""
