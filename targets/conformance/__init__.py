"""Conformance: ONNX's own backend node tests run on any target through ONNX's backend API.

`backend_for(name)` is the `onnx.backend.base.Backend` of a registered target;
`run_node_tests(name)` runs ONNX's node cases on it and returns a `ConformanceReport`;
`failing_ops(report)` is the set of claimed ops to fix or unclaim. `python -m
targets.conformance TARGET ...` writes docs/conformance.md. See docs/conformance.md.
"""

from targets.conformance.backend import backend_for
from targets.conformance.node_tests import ConformanceReport, failing_ops, run_node_tests

__all__ = ["ConformanceReport", "backend_for", "failing_ops", "run_node_tests"]
