"""A test target that computes in a precision of its own choosing and says so in its compile
record, as a vendor runtime does that runs a float32 model in bfloat16 by default: the
reference path (which really runs float32), plus that record."""

from __future__ import annotations

import dataclasses

import onnx_ir as oir

from passes.base import PassConfig
from targets.api import CompiledModel
from targets.precision_choice import PRECISION_KEY, PrecisionChoice
from targets.reference_target import ReferenceTarget

VENDOR_BF16 = PrecisionChoice.decide(model="float32", requested="default", effective="bfloat16")


class VendorDefaultTarget(ReferenceTarget):
    """Records VENDOR_BF16 for every model it compiles."""

    name = "vendor-default"

    def compile(self, model: oir.Model, config: PassConfig) -> CompiledModel:
        compiled = super().compile(model, config)
        extra = {**compiled.record.extra, PRECISION_KEY: VENDOR_BF16.to_json()}
        return dataclasses.replace(
            compiled, record=dataclasses.replace(compiled.record, extra=extra)
        )
