"""The HTML report's profile section: per profile, its slowest layers as bars, every layer with
FLOPs as a point on its device's roofline (a layer's point is its achieved GFLOP/s at its
arithmetic intensity, so its distance under the roof is its lost time), the op-type rollup and
the sentences the figures support (sum check, unmapped time, what limits the run)."""

from __future__ import annotations

from collections.abc import Sequence

from runner.report.charts import RoofPoint, hbar_chart, roofline_chart
from runner.report.markup import color, figure, grid, note, number, section, table
from runner.report.op_sections import ceiling_roofs
from runner.report.profile_readings import limit_sentence, sum_check_line, unmapped_line
from runner.report.profile_terminal import DEFAULT_TOP
from runner.results.profile import ProfileLayer, ProfileResult

PROFILE_SECTION = ("profile", "Profiles")
_BOUND_COLORS = {"compute": color(0), "memory": color(1)}
_ROLLUP_HEADERS = ("op types", "layers", "ms", "share", "% of roofline", "lost ms", "bound")


def profile_section(profiles: Sequence[tuple[str, ProfileResult]]) -> str:
    """One block per profile; "" without profiles."""
    if not profiles:
        return ""
    intro = (
        "Per-layer times from each target's profiler, in the IR's node ids; a layer's roofline "
        "is the lower of the memory slope and the compute ceiling of the dtype it computes in."
    )
    return section(
        *PROFILE_SECTION, intro, "".join(_profile_block(path, r) for path, r in profiles)
    )


def _profile_block(path: str, result: ProfileResult) -> str:
    title = f"{result.model} on {result.target}, {result.pipeline or 'no pipeline'}"
    top = result.layers[:DEFAULT_TOP]
    bars = hbar_chart(
        [(layer.name, layer.time_ms, _tip(layer)) for layer in top],
        color(0),
        "ms (median over runs)",
        f"slowest layers of {title}",
    )
    figures = [figure(f"Top {len(top)} layers: {title}", bars, note(path))]
    points = [_point(layer) for layer in result.layers if _on_roofline(layer)]
    if points:
        roofline = result.roofline
        roofs = ceiling_roofs(roofline.compute_gflops, achievable=False)
        bandwidth = roofline.bandwidth_gbs.value if roofline.bandwidth_gbs else None
        chart = roofline_chart(roofs, bandwidth, points, f"layers of {title} on the roofline")
        caption = note(f"{roofline.device}. Colour: compute-bound or memory-bound layers.")
        figures.append(figure(f"Roofline: {title}", chart, caption))
    rows = [
        [
            group.key,
            group.layers,
            number(group.time_ms),
            f"{group.share:.1%}",
            None if group.roofline_fraction is None else f"{100 * group.roofline_fraction:.3g}%",
            number(group.lost_ms),
            group.bound,
        ]
        for group in result.by_op_type
    ]
    sentences = [sum_check_line(result), unmapped_line(result), limit_sentence(result)]
    return (
        grid(figures)
        + table(_ROLLUP_HEADERS, rows, (1, 2, 3, 4, 5))
        + "".join(note(sentence) for sentence in sentences)
    )


def _on_roofline(layer: ProfileLayer) -> bool:
    return bool(layer.flops and layer.nbytes and layer.gflops)


def _point(layer: ProfileLayer) -> RoofPoint:
    intensity = (layer.flops or 0) / (layer.nbytes or 1)
    fill = _BOUND_COLORS.get(str(layer.bound), color(2))
    return RoofPoint(intensity, layer.gflops or 0.0, fill, "circle", _tip(layer))


def _tip(layer: ProfileLayer) -> str:
    fraction = layer.roofline_fraction
    roof = "no roofline" if fraction is None else f"{100 * fraction:.3g}% of the {layer.dtype} roof"
    ops = "+".join(layer.op_types) or "unmapped"
    return f"{layer.name} ({ops}): {number(layer.time_ms)} ms, {roof}"
