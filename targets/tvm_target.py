"""The `tvm` target: Apache TVM's Relax compiler, through its ONNX frontend, on the CPU (LLVM) or
a CUDA GPU.

The model is first cleaned with the toolkit's own passes (constant folding, BatchNorm folded into
convolutions, LayerNorm recognized, identity removal, dead code): TVM's frontend rejects
torch-exported shape arithmetic (Shape -> Gather -> Concat -> Max/Mul/... -> ConstantOfShape or
Reshape) that those passes fold away when the input shapes are static. Symbolic dims stay
symbolic: Relax compiles them as shape variables, so one artifact runs every batch size, but
shape arithmetic over them cannot fold (the frontend error says so).

On the CPU, every fused PrimFunc goes through the project's schedule rules
(`targets.tvm_schedules`), and the compile record lists which rule scheduled which function.
The 3x3 stride-1 convolutions run as Winograd F(2x2, 3x3) there (`tvm{winograd=false}` keeps
them direct). Nothing is tuned (MetaSchedule crashes on this wheel). On CUDA, `tvm.compile`'s
default GPU pipeline gives every kernel DLight's default schedule.

This module is what the registry imports (`runner targets list` imports every target): the
target's options and claims, loaded without TVM, onnx or numpy. Lowering, building, the library
cache and sessions are in `targets.tvm_compiler`, imported when a model is compiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from passes.base import PassConfig
from passes.option_range import bounded
from targets.api import Capabilities, CompiledModel, FusedOp, Target, TargetInfo
from targets.installed import host_runtime_info
from targets.known_failures import (
    FailureRule,
    always,
    attribute,
    input_count,
    known_failure,
    used_outputs,
)
from targets.profiling import ProfilingTarget, TargetProfile

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np
    import onnx_ir as oir

    from targets.tvm_compiler import Lowering, TvmSession

# The packages that install the `tvm` module.
DISTRIBUTIONS = ("apache-tvm",)
LOWERING = "fold-constants,fuse-conv-bn,recognize-layernorm{target=tvm},remove-identity,dce"
# Inputs that TVM's ONNX frontend reads as constants (shapes, axes, counts): a node that gets
# them at run time falls back. Found by ONNX's node tests (docs/conformance.md).
_CONSTANT_OPERANDS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "ConstantOfShape": (0,),
    "Tile": (1,),
    "Split": (1,),
    "Pad": (1, 2, 3),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "TopK": (1,),
    "OneHot": (1,),
    "Range": (0, 1, 2),
    "Trilu": (1,),
    "EyeLike": (),
    "CumSum": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Slice": (1, 2, 3, 4),
    **{
        op: (1,)
        for op in (
            "ReduceL1",
            "ReduceL2",
            "ReduceLogSum",
            "ReduceLogSumExp",
            "ReduceMax",
            "ReduceMean",
            "ReduceMin",
            "ReduceProd",
            "ReduceSum",
            "ReduceSumSquare",
        )
    },
}


def _typed_values(node: oir.Node) -> list[oir.Value]:
    return [v for v in [*node.inputs, *node.outputs] if v is not None and v.type is not None]


def _mixed_dtypes(node: oir.Node) -> bool:
    return len({v.dtype for v in node.inputs if v is not None}) > 1


def _floating_base(node: oir.Node) -> bool:
    base = node.inputs[0]
    return base is not None and base.dtype is not None and base.dtype.is_floating_point()


def _symbolic_input_shape(node: oir.Node) -> bool:
    """Input 0's shape has a dim that is not a number (a symbolic length, or unknown)."""
    shape = node.inputs[0].shape if node.inputs[0] is not None else None
    return shape is not None and any(not isinstance(dim, int) for dim in shape)


# Where TVM 0.27 fails ONNX's node tests (docs/conformance.md), or the zoo's models.
_KNOWN_FAILURES: tuple[FailureRule, ...] = (
    *(
        (op, lambda n: used_outputs(n) > 1, f"TVM's frontend drops {op}'s extra outputs")
        for op in ("LayerNormalization", "MaxPool", "BatchNormalization", "Dropout")
    ),
    ("Dropout", lambda n: input_count(n) == 3, "TVM's frontend ignores Dropout's training mode"),
    ("Pow", _mixed_dtypes, "TVM's frontend needs Pow's operands in one dtype"),
    ("Pow", lambda n: not _floating_base(n), "TVM's power only applies to floats"),
    *(
        (op, lambda n: attribute(n, "block_size", 0) != 0, f"TVM's frontend has no blocked {op}")
        for op in ("QuantizeLinear", "DequantizeLinear")
    ),
    (
        "ConvTranspose",
        lambda n: attribute(n, "output_shape", None) is not None,
        "TVM's frontend ignores ConvTranspose's output_shape",
    ),
    ("EyeLike", lambda n: attribute(n, "dtype", None) is not None, "TVM's EyeLike ignores dtype"),
    # Not node tests: the zoo's Llama decoder, whose sequence and past lengths stay symbolic.
    (
        "Expand",
        _symbolic_input_shape,
        "TVM's ONNX frontend expands to a constant shape only from an input of static shape",
    ),
    (
        "CumSum",
        always,
        "TVM's SplitLayoutRewritePreproc, in the CPU schedule pipeline, fails on CumSum's scan",
    ),
    (
        "ScatterElements",
        always,
        "TVM's CPU schedule pipeline fails on ScatterElements' scatter loop (no compute block)",
    ),
    *(
        (op, always, f"TVM's {op} fails ONNX's node tests")
        for op in (
            "AffineGrid",
            "BitShift",
            "IsInf",
            "MaxUnpool",
            "Mish",
            "Mod",
            "NonMaxSuppression",
            "RMSNormalization",
            "RoiAlign",
            "SpaceToDepth",
        )
    ),
)

# What the frontend imports (any type onnx maps to numpy) and the VM moves in and out as numpy;
# each one round-trips through tests/test_target_tvm.py.
DTYPES = frozenset(
    {"float16", "float32", "float64", "int8", "int16", "int32", "int64"}
    | {"uint8", "uint16", "uint32", "uint64", "bool"}
)
# The frontend converts default-domain LayerNormalization whatever the model's opset, so fusion
# passes may emit it below opset 17, where ONNX does not define it yet.
FUSED_OPS = (FusedOp("LayerNormalization", opsets=(1, 16)),)


@dataclass(frozen=True)
class TvmConfig(PassConfig):
    device: Literal["cpu", "cuda"] = "cpu"
    opt_level: int = bounded(3, low=0, high=4)  # TVM's PassContext levels
    mcpu: str = ""  # LLVM CPU name; "" takes LLVM's host CPU or the one the CPU flags prove
    cache: bool = True  # reuse compiled libraries from $ASICPERF_CACHE/tvm
    schedule: bool = True  # the project's CPU schedule rules; false keeps TVM's plain loop nests
    # 3x3 stride-1 float32 convolutions as Winograd F(2x2, 3x3) (with the rules, on the CPU);
    # false keeps every convolution direct
    winograd: bool = True


class TvmTarget(ProfilingTarget, Target):
    name = "tvm"
    config_type = TvmConfig

    def __init__(self) -> None:
        # What `prepare` lowered, by the lowered model's fingerprint: `compile` builds such a
        # model as it is instead of lowering it a second time.
        self._prepared: dict[str, Lowering] = {}

    def info(self) -> TargetInfo:
        """From the package metadata: a TVM without LLVM or a missing GPU is reported by
        `compile`, since only importing TVM (a second) tells."""
        return host_runtime_info(self.name, "tvm", DISTRIBUTIONS, (1, 8))

    def capabilities(self) -> Capabilities:
        from targets.tvm_compiler import converter_capabilities

        return converter_capabilities()

    def unsupported_reason(self, node: oir.Node, capabilities: Capabilities) -> str | None:
        """Beyond the converter table: the frontend needs shape-like operands as constants."""
        import onnx_ir as oir

        from passes.rewrite import constant_array

        reason = super().unsupported_reason(node, capabilities)
        if reason is not None or node.domain not in ("", "ai.onnx"):
            return reason
        for index in _CONSTANT_OPERANDS.get(node.op_type, ()):
            value = node.inputs[index] if index < len(node.inputs) else None
            if value is not None and constant_array(value) is None:
                return f"TVM's ONNX frontend needs {node.op_type} input {index} as a constant"
        if any(not isinstance(v.type, oir.TensorType) for v in _typed_values(node)):
            return "TVM's ONNX frontend types sequences and optionals as plain tensors"
        return known_failure(node, _KNOWN_FAILURES)

    def prepare(self, model: oir.Model) -> oir.Model:
        """Lowered first, so shape operands that the cleanup folds count as constants when the
        claims are checked (else their Reshapes would fall back and split the graph)."""
        from targets.tvm_compiler import lower

        lowered, lowering = lower(model)
        self._prepared[lowering.fingerprint] = lowering
        return lowered

    def compile(self, model: oir.Model, config: PassConfig) -> CompiledModel:
        from targets.tvm_compiler import compile_tvm

        assert isinstance(config, TvmConfig)
        return compile_tvm(self.name, model, config, self.capabilities(), self._prepared)

    def load(self, compiled: CompiledModel, batch_size: int) -> TvmSession:
        """Any batch size: symbolic dims are shape variables in the compiled module."""
        from targets.tvm_compiler import load_session

        return load_session(self.name, compiled)

    def profile(
        self,
        compiled: CompiledModel,
        batch_size: int,
        feeds: Mapping[str, np.ndarray],
        runs: int,
    ) -> TargetProfile:
        """Every call of the Relax VM timed, mapped to the nodes it executes by its fused ops
        and the data it reads (`targets.tvm_profile`)."""
        from targets.tvm_profile import profile_tvm

        return profile_tvm(self.load(compiled, batch_size), feeds, runs)
