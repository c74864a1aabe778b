"""Cleanup passes: folding, dead and duplicate code, no-op removal."""
