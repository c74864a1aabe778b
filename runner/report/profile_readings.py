"""What a profile says in words, generated from its figures so the text cannot drift from them:
the sum check against the end-to-end latency, the time no IR node accounts for, and what limits
the run (the op-type group that loses the most time against the roofline)."""

from __future__ import annotations

from runner.results.profile import ProfileGroup, ProfileResult


def sum_check_line(result: ProfileResult) -> str:
    """ "layers 41.2 ms of 43.0 ms end to end: 1.8 ms framework overhead"."""
    overhead = result.overhead_ms
    gap = (
        f"{overhead:.3g} ms framework overhead"
        if overhead >= 0
        else f"the layers exceed it by {-overhead:.3g} ms (profiler overhead)"
    )
    return (
        f"layers {result.total_ms:.3g} ms of {result.end_to_end_ms:.3g} ms end to end "
        f"(median of {result.runs} runs): {gap}"
    )


def unmapped_line(result: ProfileResult) -> str:
    count = sum(1 for layer in result.layers if not layer.nodes)
    if count == 0:
        return "unmapped: none (every layer maps to IR nodes)"
    share = result.unmapped_ms / result.total_ms if result.total_ms > 0 else 0.0
    return (
        f"unmapped: {result.unmapped_ms:.3g} ms ({share:.1%}) in {count} layer"
        f"{'s' if count != 1 else ''} whose names map to no IR node (kept in every total)"
    )


def limiting_group(result: ProfileResult) -> ProfileGroup | None:
    """The op-type group that loses the most time against the roofline."""
    judged = [group for group in result.by_op_type if group.lost_ms is not None]
    return max(judged, key=lambda group: group.lost_ms or 0.0, default=None)


def limit_sentence(result: ProfileResult) -> str:
    """What limits the run, as far as the figures support it."""
    group = limiting_group(result)
    if group is None or group.roofline_fraction is None:
        return "no layer has FLOPs and bytes to judge against the roofline"
    count = f"{group.layers} layer{'s' if group.layers != 1 else ''}"
    dtypes = "/".join(group.dtypes).upper()
    bound = f", mostly {group.bound}-bound" if group.bound else ""
    return (
        f"{group.key} ({count}) takes {group.share:.0%} of the layers' time at "
        f"{100 * group.roofline_fraction:.2g}% of the {dtypes} roofline{bound}: "
        f"{group.lost_ms:.3g} ms of its {group.time_ms:.3g} ms is lost against it"
    )
