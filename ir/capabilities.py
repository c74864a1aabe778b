"""What a target executes, as data both sides read: the target declares it, passes ask it.

`Capabilities.ops` is every op the target runs; `fused_ops` lists the fused and contrib ops a
fusion pass may emit for it, with the conditions the target's kernels put on them (the model's
opset, the activations an epilogue applies, the forms an attention kernel takes). A pass asks
these records, never a target's name, so a vendor's target receives a fusion by declaring the
op it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

FLOAT32 = frozenset({"float32"})


@dataclass(frozen=True)
class FusedOp:
    """A fused or contrib op the target runs, and on what.

    `opsets` is the range of the model's default-domain (ai.onnx) opset at which the target runs
    the op, both ends included, None for no upper end: a target that runs default-domain
    LayerNormalization below opset 17, where ONNX does not define it yet, declares
    `FusedOp("LayerNormalization", opsets=(1, 16))`. `epilogues` are the activations the op
    applies to its result (FusedConv: Relu, Clip, ...) and `variants` the forms it accepts
    (attention: "bias" for an additive attention bias, "kv-cache" for past/present inputs, ...).
    `attributes` maps an epilogue's parameters to the op's attributes: "activation_params" (one
    list attribute) or "alpha_beta" (activation_alpha, activation_beta)."""

    op_type: str
    domain: str = ""
    opsets: tuple[int, int | None] = (1, None)
    epilogues: frozenset[str] = frozenset()
    variants: frozenset[str] = frozenset()
    dtypes: frozenset[str] = FLOAT32
    attributes: str = ""

    def runs_at(self, opset: int) -> bool:
        """The target runs this op in a model importing `opset` of the default domain."""
        low, high = self.opsets
        return low <= opset and (high is None or opset <= high)

    @property
    def qualified_name(self) -> str:
        return f"{self.domain}.{self.op_type}" if self.domain else self.op_type


@dataclass(frozen=True)
class Capabilities:
    """The ops and dtypes a target runs. `ops` holds (domain, op_type) with the default domain
    spelled ""; None means every op ONNX defines (a reference path). `fused_ops` are the fused
    and contrib ops fusion passes may emit for the target (see `FusedOp`)."""

    ops: frozenset[tuple[str, str]] | None
    dtypes: frozenset[str]
    # What the session can take in and hand back, when narrower than `dtypes`.
    boundary_dtypes: frozenset[str] | None = None
    fused_ops: tuple[FusedOp, ...] = ()

    def runs_op(self, domain: str, op_type: str) -> bool:
        domain = "" if domain == "ai.onnx" else domain
        return self.ops is None or (domain, op_type) in self.ops

    def fused_op(self, op_type: str, domain: str = "", opset: int | None = None) -> FusedOp | None:
        """The declaration of fused op `domain.op_type`, if the target declares it (and runs it
        at `opset`, when given)."""
        domain = "" if domain == "ai.onnx" else domain
        for declared in self.fused_ops:
            if (declared.op_type, declared.domain) != (op_type, domain):
                continue
            if opset is None or declared.runs_at(opset):
                return declared
        return None
