"""Pipelines: named lists of passes, or inline specs in MLIR's pass-pipeline style.

    fold-constants,fuse-conv-bn,sparsify{pattern=2:4 ratio=0.5},dce
    O1,fuse-activation{target=onnxruntime}

An item is a pass name or a pipeline name, a pass may carry `{key=value ...}` options
(separated by spaces; a list value separates its items with commas). Option values are
converted to the type of the config field; a bad name, option or value is a one-line
`PipelineError` naming the pass.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from ir.errors import AsicperfError
from passes.base import Pass, PassConfig
from passes.catalog import PASSES

# Named pipelines, in terms of passes and other pipelines.
PIPELINES: Mapping[str, str] = {
    "cleanup": "fold-constants,remove-identity,cse,dce",
    "fuse": "fuse-conv-bn,fuse-matmul-add,recognize-gelu,recognize-layernorm,fuse-attention,"
    "fuse-activation,dce",
    "O1": "cleanup,fuse",
    # MatMul+Add as Gemm first: onnxruntime makes that fusion itself on static shapes, before it
    # fuses QDQ pairs, and the MatMuls it turns into Gemm would stay float. uint8 activations
    # (asymmetric) are onnxruntime's x86 default (u8s8 VNNI kernels) and keep BERT's drift lower.
    "int8": "cleanup,fuse-matmul-add{reshape_nd=true},quantize-int8{activations=asymmetric}",
    "bf16": "cleanup,mixed-precision{dtype=bfloat16}",
    "fp16": "cleanup,mixed-precision{dtype=float16}",
}


# A comma right before `key=`: options written as a comma-separated list (a list value
# separates its items with commas, but an item is never `key=...`).
_COMMA_BEFORE_OPTION = re.compile(r",\s*(?=[A-Za-z_]\w*=)")


class PipelineError(AsicperfError):
    """An unknown pass or pipeline name, or a bad option."""


def parse_pipeline(spec: str) -> list[Pass]:
    """The passes `spec` names, in order, each configured with its options."""
    passes: list[Pass] = []
    for item in pipeline_items(spec):
        try:
            name, options = split_options(item, spec)
        except PipelineError as error:
            raise PipelineError(f"pass '{item}': {error}") from None
        if name in PIPELINES:
            if options:
                raise PipelineError(f"pipeline '{name}' takes no options (in '{spec}')")
            passes.extend(parse_pipeline(PIPELINES[name]))
        elif name in PASSES:
            pass_type = PASSES[name]
            passes.append(pass_type(make_config(pass_type, options)))
        else:
            known = ", ".join([*sorted(PIPELINES), *sorted(PASSES)])
            raise PipelineError(f"unknown pass or pipeline '{name}' (known: {known})")
    if not passes:
        raise PipelineError(f"empty pipeline '{spec}'")
    return passes


def pipeline_items(spec: str) -> list[str]:
    """Split at commas outside braces."""
    items, depth, current = [], 0, []
    for char in spec:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise PipelineError(f"unbalanced '}}' in pipeline '{spec}'")
        if char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise PipelineError(f"unbalanced '{{' in pipeline '{spec}'")
    items.append("".join(current).strip())
    if any(not item for item in items):
        raise PipelineError(f"empty item in pipeline '{spec}'")
    return items


def split_options(item: str, spec: str) -> tuple[str, dict[str, str]]:
    """`name{key=value ...}` -> (name, {key: value}); `spec` is the whole text `item` is part
    of, named in messages when it is more than the item.

    Errors say what is wrong with the braces or an option but not whose options they are: a
    pipeline prefixes the pass (`parse_pipeline`), `--target` the target, since the same text
    names either."""
    name, brace, rest = item.partition("{")
    name = name.strip()
    if not brace:
        return name, {}
    where = f" (in '{spec}')" if spec != item else ""
    closing = rest.find("}")
    if closing < 0:
        raise PipelineError(f"missing '}}' after the options{where}")
    if closing != len(rest) - 1:
        after = rest[closing + 1 :]
        raise PipelineError(f"text '{after}' after the options' closing '}}'{where}")
    body = rest[:closing]
    if _COMMA_BEFORE_OPTION.search(body):
        spaced = _COMMA_BEFORE_OPTION.sub(" ", body)
        raise PipelineError(
            f"options are separated by spaces, not commas: {name}{{{spaced}}}{where}"
        )
    options = {}
    for pair in body.split():
        key, equals, value = pair.partition("=")
        if not equals or not key or not value:
            raise PipelineError(f"option '{pair}' is not key=value{where}")
        options[key] = value
    return name, options


def make_config(
    owner: type[Pass] | Any, options: Mapping[str, str], *, kind: str = "pass"
) -> PassConfig:
    """`owner.config_type` filled from `options` (text) converted to its fields' types.

    `owner` is a pass or a target class: anything with `name` and `config_type`.
    """
    config_type = owner.config_type
    label = f"{kind} '{owner.name}'"
    fields = {field.name: field for field in dataclasses.fields(config_type)}
    hints = typing.get_type_hints(config_type)
    values = {}
    for key, text in options.items():
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise PipelineError(f"{label}: unknown option '{key}' (options: {known})")
        try:
            values[key] = _convert(text, hints[key])
        except ValueError as error:
            raise PipelineError(f"{label}: option {key}={text}: {error}") from None
    try:
        return config_type(**values)
    except ValueError as error:  # a config's __post_init__ rejects a combination
        raise PipelineError(f"{label}: {error}") from None


def _convert(text: str, hint: object) -> object:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        choices = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if text.lower() == "none" and len(choices) < len(typing.get_args(hint)):
            return None
        return _convert(text, choices[0])
    if origin is tuple:
        (item_type, *_) = typing.get_args(hint)
        return tuple(_convert(item, item_type) for item in text.split(",") if item)
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(map(str, allowed))}")
        return text
    if hint is bool:
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if hint is int:
        return int(text)
    if hint is float:
        return float(text)
    if hint is str:
        return text
    raise ValueError(f"cannot parse options of type {hint}")
