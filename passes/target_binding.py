"""Binding a pipeline to the target that will run its output.

Fusion passes emit the fused ops of one target (their config's `target` field, onnxruntime by
default): run for another target, those ops fall back to the reference path and the figure
measures the fallback. So a pipeline is resolved for the target being measured before it runs:
every pass with a `target` option the text leaves unset gets that target's name (a pass whose
target has no fused op skips with its reason), and a pass set to another target is refused,
since it would build ops the measured target cannot run. The resolved text is what a result
records, so it says exactly which passes ran with which options.
"""

from __future__ import annotations

import dataclasses

from passes.catalog import PASSES
from passes.pipeline import PIPELINES, PipelineError, parse_pipeline, pipeline_items, split_options

TARGET_OPTION = "target"


def _expanded(spec: str) -> list[tuple[str, dict[str, str]]]:
    """The passes of `spec` with the options its text sets, named pipelines expanded."""
    items = []
    for item in pipeline_items(spec):
        name, options = split_options(item, spec)
        if name in PIPELINES:
            items.extend(_expanded(PIPELINES[name]))
        else:
            items.append((name, options))
    return items


def _takes_target(name: str) -> bool:
    fields = dataclasses.fields(PASSES[name].config_type)
    return any(field.name == TARGET_OPTION for field in fields)


def _item_text(name: str, options: dict[str, str]) -> str:
    pairs = " ".join(f"{key}={value}" for key, value in options.items())
    return f"{name}{{{pairs}}}" if pairs else name


def bind_pipeline(spec: str, target: str) -> str:
    """`spec` as the flat list of passes it runs, each pass with a `target` option set to
    `target`; "" stays "" (no passes). Raises PipelineError for a bad spec, or for a pass the
    text sets to another target."""
    if not spec:
        return ""
    parse_pipeline(spec)  # a bad name or option is reported as the pipeline parser words it
    items = _expanded(spec)
    for name, options in items:
        if not _takes_target(name):
            continue
        chosen = options.setdefault(TARGET_OPTION, target)
        if chosen != target:
            raise PipelineError(
                f"pipeline '{spec}': pass '{name}' is set to {TARGET_OPTION}={chosen} but runs "
                f"for target '{target}', which would fall back on the ops it makes; drop the "
                f"option (passes take the measured target) or measure {chosen}"
            )
    return ",".join(_item_text(name, options) for name, options in items)
