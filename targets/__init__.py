"""Compile and runtime backends ("targets") and the hardware spec database they point at."""
