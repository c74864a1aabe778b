"""Binding a pipeline to the target that will run its output.

Fusion passes emit the fused ops one target declares (their config's `target` field; none by
default, so only standard ONNX ops): run for another target, those ops fall back to the
reference path and the figure measures the fallback, and with no target the passes skip the
fusions the measured target could have run. So a pipeline is resolved for the target being
measured before it runs: every pass with a `target` option the text leaves unset gets that
target's name (a pass whose target declares no fused op for a site skips it with the reason),
and a pass set to another target is refused, since it would build ops the measured target
cannot run. The resolved text is what a result records, so it says exactly which passes ran
with which options.
"""

from __future__ import annotations

import dataclasses

from passes.catalog import PASSES
from passes.pipeline import (
    PassItem,
    PipelineError,
    PipelineItem,
    RepeatItem,
    parse_pipeline,
    pipeline_tree,
)

TARGET_OPTION = "target"


def _takes_target(name: str) -> bool:
    fields = dataclasses.fields(PASSES[name].config_type)
    return any(field.name == TARGET_OPTION for field in fields)


def bind_pipeline(spec: str, target: str) -> str:
    """`spec` as the passes it runs (named pipelines expanded, repeat groups kept), each pass
    with a `target` option set to `target`; "" stays "" (no passes). Raises PipelineError for
    a bad spec, or for a pass the text sets to another target."""
    if not spec:
        return ""
    parse_pipeline(spec)  # a bad name or option is reported as the pipeline parser words it
    return ",".join(_bound(item, spec, target).text() for item in pipeline_tree(spec))


def _bound(item: PipelineItem, spec: str, target: str) -> PipelineItem:
    """`item` with `target` set on every pass that takes one (a repeat group's too)."""
    if isinstance(item, RepeatItem):
        members = tuple(_bound_pass(member, spec, target) for member in item.items)
        return RepeatItem(members, item.options)
    return _bound_pass(item, spec, target)


def _bound_pass(item: PassItem, spec: str, target: str) -> PassItem:
    if not _takes_target(item.name):
        return item
    options = dict(item.options)
    chosen = options.setdefault(TARGET_OPTION, target)
    if chosen != target:
        raise PipelineError(
            f"pipeline '{spec}': pass '{item.name}' is set to {TARGET_OPTION}={chosen} but runs "
            f"for target '{target}', which would fall back on the ops it makes; drop the "
            f"option (passes take the measured target) or measure {chosen}"
        )
    return PassItem(item.name, options)
