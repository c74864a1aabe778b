"""The inspectable IR: onnx_ir graphs plus stable node ids, fingerprints, costs and a verifier.

Nothing is imported here: every module imports `ir.errors`, and the CLI must start without
onnx or numpy (import `ir.model_io`, `ir.fingerprint`, ... by name)."""
