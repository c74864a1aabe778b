"""A pass that is its rules: the class lists them, the engine does the rest.

    class FuseMatMulAdd(RuleSetPass):
        name = "fuse-matmul-add"
        summary = "..."
        rules = (Rule("matmul-add-gemm", MATMUL_PLUS_BIAS, build=_gemm, requires=Emits("Gemm")),)

A pass whose rules depend on its options (a tolerance in a `Scalar`) builds them in
`rule_set`.
"""

from __future__ import annotations

from typing import ClassVar

import onnx_ir as oir

from passes.base import Pass, PassLog
from passes.engine.engine import apply_rules, target_of
from passes.engine.rules import Rule
from passes.target_capabilities import check_target_name


class RuleSetPass(Pass):
    """A pass applying `rules` (in order, at each node) to a fixed point over every graph."""

    rules: ClassVar[tuple[Rule, ...]] = ()

    def rule_set(self) -> tuple[Rule, ...]:
        """The rules this configuration applies: `rules`, unless a subclass builds them from its
        options."""
        return self.rules

    def run(self, model: oir.Model, log: PassLog) -> None:
        check_target_name(target_of(self.config))  # an unknown name fails on any model
        apply_rules(model, self.rule_set(), self.config, log, self.name)
