"""Operator-level benchmarks with a sound timing method and roofline figures."""
