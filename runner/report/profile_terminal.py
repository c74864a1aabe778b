"""A profile in the terminal: the slowest layers, the op-type and pass rollups, the sum check
against the end-to-end latency, the unmapped time and what limits the run. `runner profile`
and `runner report show` print the same tables."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from runner.report.profile_readings import limit_sentence, sum_check_line, unmapped_line
from runner.report.terminal import add_text_row, number_text, text_table
from runner.results.profile import ProfileGroup, ProfileLayer, ProfileResult

DEFAULT_TOP = 10
_SHOWN_IDS = 4  # node ids listed per layer before "+N"


def profile_renderables(result: ProfileResult, top: int = DEFAULT_TOP) -> list[RenderableType]:
    return [
        Text(f"roofline: {roofline_text(result)}"),
        _layers_table(result, top),
        _groups_table("by op type", "op types", result.by_op_type),
        _groups_table(
            "by pass (the passes that created the layers' nodes)", "passes", result.by_pass
        ),
        Text(sum_check_line(result)),
        Text(unmapped_line(result)),
        Text(f"limit: {limit_sentence(result)}", style="bold"),
    ]


def roofline_text(result: ProfileResult) -> str:
    """The device and its ceilings, as the layers were judged against them."""
    roofline = result.roofline
    peaks = ", ".join(
        f"{dtype} {ceiling.value:.4g} GFLOP/s" for dtype, ceiling in roofline.compute_gflops.items()
    )
    bandwidth = roofline.bandwidth_gbs
    memory = f"{bandwidth.value:.4g} GB/s" if bandwidth else "no memory bandwidth"
    return f"{roofline.device}: {peaks or 'no compute ceilings'}; {memory}"


def node_list(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_SHOWN_IDS])
    more = len(ids) - _SHOWN_IDS
    return f"{shown} +{more}" if more > 0 else shown or "-"


def _layers_table(result: ProfileResult, top: int) -> Table:
    shown = result.layers[:top]
    title = (
        f"profile {result.model} on {result.target} (batch {result.batch_size}, "
        f"{result.runs} runs): top {len(shown)} of {len(result.layers)} layers"
    )
    table = text_table(
        title,
        ("layer", "IR nodes", "op types", "ms", "± ms", "share", "bound", "% roofline", "lost ms"),
    )
    for layer in shown:
        add_text_row(
            table,
            layer.name,
            node_list(layer.nodes),
            "+".join(layer.op_types) or "-",
            f"{layer.time_ms:.3f}",
            f"{layer.spread_ms:.3f}",
            f"{layer.share:.1%}",
            _bound_text(layer),
            _percent(layer.roofline_fraction),
            number_text(layer.lost_ms, ".3f"),
        )
    return table


def _bound_text(layer: ProfileLayer) -> str:
    return f"{layer.bound} ({layer.dtype})" if layer.bound else "-"


def _groups_table(title: str, column: str, groups: Sequence[ProfileGroup]) -> Table:
    table = text_table(title, (column, "layers", "ms", "share", "% roofline", "lost ms"))
    for group in groups:
        add_text_row(
            table,
            group.key,
            str(group.layers),
            f"{group.time_ms:.3f}",
            f"{group.share:.1%}",
            _percent(group.roofline_fraction),
            number_text(group.lost_ms, ".3f"),
        )
    return table


def _percent(fraction: float | None) -> str:
    """Three significant figures: a layer at 0.4 % of its roofline is not at 0 %."""
    return "-" if fraction is None else f"{100 * fraction:.3g}%"
