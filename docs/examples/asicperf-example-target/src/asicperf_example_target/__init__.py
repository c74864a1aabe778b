"""An example vendor target for asicperf: a numpy interpreter that, like a young ASIC SDK, runs
only a subset of ONNX ops. It lives outside the core and registers through an entry point."""

__version__ = "0.1.0"
