"""The Relax pipeline for the CPU: TVM's default passes, with the activations of 2-D
convolutions in NHWC (weights HWIO, transposed once at compile time), the 3x3 stride-1 ones as
Winograd F(2x2, 3x3) (`winograd`), TVM's fast (polynomial) exp/erf/tanh, and the project's
schedule rules applied to every fused PrimFunc before it is lowered. Weights that a rule reads
in another layout (packed per register tile) are repacked once, at compile time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from targets.tvm_schedules.apply import FunctionSchedule, apply_rules
from targets.tvm_schedules.host_tuning import CpuTuning
from targets.tvm_schedules.rule import ScheduleRule
from targets.tvm_schedules.winograd import rewrite_winograd

# Channels innermost: the output channels of a convolution become the vectorized axis, the way
# they are for a matmul's columns.
CONV_LAYOUT = {"relax.nn.conv2d": ["NHWC", "HWIO"]}
PREPACKED = "_prepacked"  # TVM's suffix for a function whose constants were packed for it


def fused_module(module: Any, target: Any, winograd: bool = False) -> Any:
    """Legalized and fused, with the constant parameters marked, not yet scheduled: what the
    rules see. `winograd` turns the 3x3 stride-1 convolutions into Winograd's three steps
    first (`winograd.rewrite_winograd`)."""
    import tvm
    from tvm import relax

    prepare = [
        relax.backend.DispatchSampling(),
        relax.backend.DispatchSortScan(),
        relax.transform.DecomposeOpsForInference(),
        # exp/erf/tanh (and softmax's exp) as polynomials LLVM vectorizes, not one libm call per
        # lane: GELU and softmax run 10-50x faster, within ~1e-6 relative of the exact functions
        relax.transform.FastMathTransform(),
    ]
    legalize = [
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]
    with target:
        module = tvm.transform.Sequential(prepare)(module)
        module = _channels_last(module)
        if winograd:
            # The HWIO weights ConvertLayout transposed, folded to constants the rewrite reads
            module = rewrite_winograd(relax.transform.FoldConstant()(module))
        return mark_constant_parameters(tvm.transform.Sequential(legalize)(module))


def mark_constant_parameters(module: Any) -> Any:
    """Each PrimFunc's parameters that every call passes a constant (the model's weights) as its
    `layout_free_buffers` attribute: a rule may read those in another layout, made at compile
    time (see `fold_layout_rewrites`). TVM's AttachAttrLayoutFreeBuffers does the same but
    renames the functions, and the compile record and profile name them."""
    import tvm
    from tvm import relax

    call_tir = tvm.ir.Op.get("relax.call_tir")
    constant: dict[str, list[bool]] = {}

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Call) and expr.op.same_as(call_tir):
            arguments = expr.args[1].fields if isinstance(expr.args[1], relax.Tuple) else []
            flags = [isinstance(argument, tvm.ir.expr.GenericConst) for argument in arguments]
            seen = constant.setdefault(expr.args[0].name_hint, flags)
            constant[expr.args[0].name_hint] = [a and b for a, b in zip(seen, flags, strict=True)]

    for func in module.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    marked = tvm.IRModule(dict(module.functions), attrs=module.attrs)
    for var, func in module.functions.items():
        free = [i for i, flag in enumerate(constant.get(var.name_hint, [])) if flag]
        if isinstance(func, tvm.tirx.PrimFunc) and free:
            marked[var] = func.with_attr("layout_free_buffers", free)
    return marked


def _channels_last(module: Any) -> Any:
    """Convolutions in NHWC/HWIO. Only modules with a 2-D convolution go through TVM's
    ConvertLayout: it crashes the process (SIGFPE) on some integer graphs without one (ONNX's
    expanded DynamicQuantizeLinear). It also rejects some graphs (it rewrites a function's output
    variable, seen with Split feeding an output); those keep their layout, and the conv2d rule's
    record says so for every convolution left in NCHW."""
    import tvm
    from tvm import relax

    if not _calls(module, "relax.nn.conv2d"):
        return module
    try:
        converted = relax.transform.ConvertLayout(CONV_LAYOUT)(module)
    except tvm.error.InternalError:  # the failed check
        return module
    return relax.transform.Normalize()(converted)


def _calls(module: Any, op_name: str) -> bool:
    """Some Relax function of `module` calls the operator `op_name`."""
    import tvm
    from tvm import relax

    found: list[bool] = []

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            found.append(expr.op.name == op_name)

    for func in module.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return any(found)


def fold_layout_rewrites(module: Any, target: Any) -> Any:
    """The weight copies that rules marked as layout rewrites, split into their own functions
    and run once, at compile time, on the constant weights; the copies' functions are then
    dropped."""
    import tvm
    from tvm import relax

    passes = [
        relax.transform.SplitLayoutRewritePreproc(),
        relax.transform.FoldConstant(),
        relax.transform.DeadCodeElimination(),
    ]
    with target:
        return tvm.transform.Sequential(passes)(module)


def _renamed(records: list[FunctionSchedule], names: set[str]) -> list[FunctionSchedule]:
    """The records under the names the functions run as: a function whose weights were packed
    at compile time runs as `<name>_prepacked` (TVM's SplitLayoutRewritePreproc names it)."""
    return [
        replace(record, function=f"{record.function}{PREPACKED}")
        if record.function not in names and f"{record.function}{PREPACKED}" in names
        else record
        for record in records
    ]


def cpu_pipeline(
    rules: Sequence[ScheduleRule],
    tuning: CpuTuning,
    records: list[FunctionSchedule],
    winograd: bool,
) -> Any:
    """A pass for `tvm.compile(..., relax_pipeline=...)`; it appends one record per PrimFunc to
    `records`; `winograd`: as in `fused_module`."""
    import tvm
    from tvm import relax

    @tvm.transform.module_pass(opt_level=0, name="asicperf.cpu_pipeline")
    def _pipeline(module: Any, _context: Any) -> Any:
        target = tvm.target.Target.current()
        module = fused_module(module, target, winograd)
        module, scheduled = apply_rules(module, rules, tuning)
        module = fold_layout_rewrites(module, target)
        records.extend(_renamed(scheduled, {var.name_hint for var in module.functions}))
        lowering = [
            relax.transform.RewriteDataflowReshape(),
            relax.transform.ToNonDataflow(),
            relax.transform.RemovePurityChecking(),
            relax.transform.CallTIRRewrite(),
            relax.transform.StaticPlanBlockMemory(),
            relax.transform.LowerAllocTensor(),
            relax.transform.KillAfterLastUse(),
            relax.transform.LowerRuntimeBuiltin(),
            relax.transform.ComputePrimValue(),
            relax.transform.VMShapeLower(),
            relax.transform.AttachGlobalSymbol(),
        ]
        with target:
            return tvm.transform.Sequential(lowering)(module)

    return _pipeline
