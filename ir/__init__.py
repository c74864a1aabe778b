"""The inspectable IR: onnx_ir graphs plus stable node ids, fingerprints, costs and a verifier."""

from ir.errors import AsicperfError, ModelLoadError, UnknownModelError, VerificationError
from ir.fingerprint import fingerprint
from ir.model_io import load_model, save_model
from ir.node_ids import NODE_ID_KEY, assign_node_ids, describe_node, find_node, node_id

__all__ = [
    "NODE_ID_KEY",
    "AsicperfError",
    "ModelLoadError",
    "UnknownModelError",
    "VerificationError",
    "assign_node_ids",
    "describe_node",
    "find_node",
    "fingerprint",
    "load_model",
    "node_id",
    "save_model",
]
