"""Per-layer control of the passes that trade accuracy for speed (quantization, low precision,
pruning): which nodes they may touch. Sensitivity analysis applies such a pass to one layer at a
time; a drift budget keeps the most sensitive layers out of it."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import onnx_ir as oir

from ir.node_ids import NODE_ID_KEY
from passes.base import Pass, PassConfig


@dataclass(frozen=True)
class LayerScopeConfig(PassConfig):
    """`nodes`: only these node ids (empty: every eligible node); `skip_nodes`: never these."""

    nodes: tuple[str, ...] = ()
    skip_nodes: tuple[str, ...] = ()

    def layer_op_types(self) -> frozenset[str] | None:
        """The op types the pass changes as layers of their own (a quantized MatMul, not the
        Relu rewired to read its output); None: any node the pass records a change on."""
        return None

    def milder(self) -> LayerScopeConfig | None:
        """This pass at a less lossy setting, for the layers a drift budget would otherwise
        keep out of it entirely (4-bit weights at 8 bits); None when it has none."""
        return None

    def in_scope(self, node: oir.Node) -> bool:
        node_id = node.metadata_props.get(NODE_ID_KEY, "")
        if node_id in self.skip_nodes:
            return False
        return not self.nodes or node_id in self.nodes


# A node named by its id, as `include=` / `exclude=` take it next to op types.
NODE_ID_NAME = re.compile(r"n\d+")


def check_op_scope(
    include: tuple[str, ...], exclude: tuple[str, ...], op_types: tuple[str, ...]
) -> None:
    """A one-line ValueError for an `include` or `exclude` entry that is neither one of
    `op_types` nor a node id like n12."""
    for option, names in (("include", include), ("exclude", exclude)):
        for name in names:
            if name not in op_types and not NODE_ID_NAME.fullmatch(name):
                raise ValueError(
                    f"{option}: '{name}' is neither a quantizable op type "
                    f"({', '.join(op_types)}) nor a node id like n12"
                )


def is_layer_scoped(pass_: Pass) -> bool:
    return isinstance(pass_.config, LayerScopeConfig)


def scoped(
    passes: list[Pass],
    *,
    only: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    milder: tuple[str, ...] = (),
) -> list[Pass]:
    """The same pipeline with every layer-scoped pass limited to `only` (when given) and kept
    off `skip` and `milder` (added to what it already skips), and followed, where it has a
    milder setting, by itself at that setting on the `milder` layers only; other passes
    unchanged."""
    result = []
    for pass_ in passes:
        if not is_layer_scoped(pass_):
            result.append(pass_)
            continue
        config = pass_.config
        assert isinstance(config, LayerScopeConfig)
        result.append(
            type(pass_)(
                replace(
                    config,
                    nodes=only or config.nodes,
                    skip_nodes=tuple(dict.fromkeys((*config.skip_nodes, *skip, *milder))),
                )
            )
        )
        gentler = config.milder()
        if milder and gentler is not None:
            result.append(type(pass_)(replace(gentler, nodes=milder)))
    return result
