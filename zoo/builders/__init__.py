"""Deterministic ONNX builders for the zoo's architectures, one per file."""
