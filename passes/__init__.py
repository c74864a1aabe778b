"""Optimization passes over the IR, each one file, each reporting an audit record of its changes."""
