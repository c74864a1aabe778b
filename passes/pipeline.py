"""Pipelines: named lists of passes, or inline specs in MLIR's pass-pipeline style.

    fold-constants,fuse-conv-bn,sparsify{pattern=2:4 ratio=0.5},dce
    O1,sparsify{pattern=2:4}

    repeat(cse,dce){max=4},fuse

An item is a pass name or a pipeline name, a pass may carry `{key=value ...}` options
(separated by spaces; a list value separates its items with commas). Option values are
converted to the type of the config field; a bad name, option or value is a one-line
`PipelineError` naming the pass. `repeat(ITEMS){max=N}` runs its items round after round until
a round changes nothing or N rounds ran (default 8; `passes.steps`); groups do not nest.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ir.errors import AsicperfError
from passes.base import Pass, PassConfig
from passes.catalog import PASSES
from passes.steps import Repeat, Step

# Named pipelines, in terms of passes and other pipelines.
PIPELINES: Mapping[str, str] = {
    "cleanup": "fold-constants,remove-identity,cse,dce",
    "fuse": "fuse-conv-bn,fuse-matmul-add,recognize-gelu,recognize-layernorm,fuse-attention,"
    "fuse-activation,dce",
    "O1": "cleanup,fuse",
    # MatMul+Add as Gemm first: a runtime that makes that fusion itself (on static shapes) before
    # it fuses QDQ pairs would leave those Gemms float. uint8 activations (asymmetric) suit x86's
    # u8s8 VNNI integer kernels and keep BERT's drift lower.
    "int8": "cleanup,fuse-matmul-add{reshape_nd=true},quantize-int8{activations=asymmetric}",
    # Decoder LLMs: RMSNorm, rotary embedding and KV-cache attention fused for the target (its
    # declared ops), SwiGLU gates recorded; then weights in 8 or 4 bits per block of 32 along K,
    # the output projection at 8 bits either way (as llama.cpp keeps it at Q8_0).
    "llm": "cleanup,fuse-rms-norm,fuse-rotary,fuse-gqa,recognize-swiglu,dce",
    "llm-int8": "llm,quantize-weights{bits=8 block=32}",
    "llm-int4": "llm,quantize-weights{bits=4 block=32}",
    "bf16": "cleanup,mixed-precision{dtype=bfloat16}",
    "fp16": "cleanup,mixed-precision{dtype=float16}",
}


# `repeat(` opening a group of items repeated to a fixed point.
_GROUP_OPENING = re.compile(rf"{Repeat.name}\s*\(")

# A comma right before `key=`: options written as a comma-separated list (a list value
# separates its items with commas, but an item is never `key=...`).
_COMMA_BEFORE_OPTION = re.compile(r",\s*(?=[A-Za-z_]\w*=)")


class PipelineError(AsicperfError):
    """An unknown pass or pipeline name, a bad option, or an order that leaves a pass's
    requirement unmet (`passes.contract_check`)."""


@dataclass(frozen=True)
class PassItem:
    """A pass as a pipeline's text names it: its name and the options the text sets."""

    name: str
    options: Mapping[str, str]

    def text(self) -> str:
        return _with_options(self.name, self.options)


@dataclass(frozen=True)
class RepeatItem:
    """A `repeat(...)` group as a pipeline's text writes it."""

    items: tuple[PassItem, ...]
    options: Mapping[str, str]

    def text(self) -> str:
        body = ",".join(item.text() for item in self.items)
        return _with_options(f"{Repeat.name}({body})", self.options)


def _with_options(head: str, options: Mapping[str, str]) -> str:
    pairs = " ".join(f"{key}={value}" for key, value in options.items())
    return f"{head}{{{pairs}}}" if pairs else head


PipelineItem = PassItem | RepeatItem


def parse_pipeline(spec: str) -> list[Step]:
    """The steps `spec` names, in order: passes, each configured with its options, and
    `repeat(...)` groups of them."""
    return [_step(item) for item in pipeline_tree(spec)]


def parse_straight_pipeline(spec: str, use: str) -> list[Pass]:
    """The passes of `spec`, for a `use` that runs them once each in order (layer by layer
    sensitivity, a drift budget); a `repeat(...)` group is a PipelineError naming the use."""
    steps = parse_pipeline(spec)
    group = next((step for step in steps if isinstance(step, Repeat)), None)
    if group is not None:
        raise PipelineError(
            f"{use}: pipeline '{spec}' repeats {group.text()}; it needs passes that run once "
            "each, in order"
        )
    return [step for step in steps if isinstance(step, Pass)]


def pipeline_tree(spec: str) -> list[PipelineItem]:
    """The items of `spec` as written, named pipelines expanded: what a tool that rewrites a
    pipeline's text edits (`passes.target_binding`). Raises PipelineError for bad syntax or an
    unknown name; options are checked when the passes are built (`parse_pipeline`)."""
    return _items(spec, group=None)


def _step(item: PipelineItem) -> Step:
    if isinstance(item, RepeatItem):
        config = make_config(Repeat, item.options, kind="group")
        return Repeat(tuple(_pass(member) for member in item.items), config)
    return _pass(item)


def _pass(item: PassItem) -> Pass:
    pass_type = PASSES[item.name]
    return pass_type(make_config(pass_type, item.options))


def _items(spec: str, *, group: str | None) -> list[PipelineItem]:
    """The items of `spec`, which is the body of the group whose text is `group`, if any."""
    items: list[PipelineItem] = []
    for text in pipeline_items(spec):
        if _GROUP_OPENING.match(text):
            if group is not None:
                raise PipelineError(f"{Repeat.name}() inside {group}: groups do not nest")
            items.append(_group(text, spec))
            continue
        try:
            name, options = split_options(text, spec)
        except PipelineError as error:
            raise PipelineError(f"pass '{text}': {error}") from None
        if name in PIPELINES:
            if options:
                raise PipelineError(f"pipeline '{name}' takes no options (in '{spec}')")
            items.extend(_items(PIPELINES[name], group=group))
        elif name in PASSES:
            items.append(PassItem(name, options))
        else:
            known = ", ".join([*sorted(PIPELINES), *sorted(PASSES)])
            raise PipelineError(f"unknown pass or pipeline '{name}' (known: {known})")
    if not items:
        raise PipelineError(f"empty pipeline '{spec}'")
    return items


def _group(text: str, spec: str) -> RepeatItem:
    """`repeat(ITEMS){max=N}`, the options optional."""
    # Options never hold parentheses, so the group's `)` is the last one.
    opening, closing = text.index("("), text.rindex(")")
    body, after = text[opening + 1 : closing].strip(), text[closing + 1 :].strip()
    if not body:
        raise PipelineError(f"empty {Repeat.name}() in pipeline '{spec}'")
    if after and not after.startswith("{"):
        raise PipelineError(f"text '{after}' after {Repeat.name}(...) in pipeline '{spec}'")
    try:
        _, options = split_options(Repeat.name + after, spec)
    except PipelineError as error:
        raise PipelineError(f"{Repeat.name}({body}): {error}") from None
    members = _items(body, group=text)
    return RepeatItem(tuple(item for item in members if isinstance(item, PassItem)), options)


def pipeline_items(spec: str) -> list[str]:
    """Split at commas outside braces and parentheses."""
    items, current = [], []
    depth = {"{": 0, "(": 0}
    for char in spec:
        if char in "{(":
            depth[char] += 1
        elif char in "})":
            opening = "{" if char == "}" else "("
            depth[opening] -= 1
            if depth[opening] < 0:
                raise PipelineError(f"unbalanced '{char}' in pipeline '{spec}'")
        if char == "," and not any(depth.values()):
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    for opening, open_count in depth.items():
        if open_count:
            raise PipelineError(f"unbalanced '{opening}' in pipeline '{spec}'")
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
