"""The Ray custom resources that place a sweep's jobs: a node advertises what it has, a job asks
for what it needs, and Ray's scheduler does the matching.

- `bench_slot`: the exclusive unit of timing. A node has one per machine (or one per
  accelerator); every job asks for one, so two timed runs never share what they measure.
- `target:<name>`: one per target available on the node, and one per op-kernel provider that
  loads there (an op-level job names its provider where a model-level one names its target), so
  a job lands only where what it runs on exists.
- `hardware:<slug>`: the node's hardware-database slugs ("host" for the CPU every machine has),
  so a run pinned to a product lands on a machine that has it.
"""

from __future__ import annotations

from microbench.providers.registry import discover as discover_providers
from targets.registry import describe
from targets.registry import discover as discover_targets

BENCH_SLOT = "bench_slot"
HOST_HARDWARE = "host"  # the slug of the machine's own CPU, which every node has


def target_resource(name: str) -> str:
    return f"target:{name}"


def hardware_resource(slug: str) -> str:
    return f"hardware:{slug}"


def node_resources(slots: int = 1) -> dict[str, float]:
    """What this machine offers a sweep: `slots` bench slots, and as many of each `target:`
    resource (targets available here, providers that load here) and `hardware:` resource (the
    slugs those run on, "host" always), so that only the slots limit how many jobs run at once.
    A registered target that is unavailable here (no driver, no device) is left out, so no job
    for it is sent to this machine. No slots (a machine that only drives sweeps): nothing."""
    if slots == 0:
        return {}
    targets = [describe(entry) for entry in discover_targets().values()]
    runs_here = {info.name: info.hardware for info in targets if info.available}
    providers = discover_providers().values()
    runs_here |= {p.name: p.plugin_type.hardware for p in providers if p.plugin_type is not None}
    slugs = {HOST_HARDWARE} | {slug for slug in runs_here.values() if slug}
    names = [BENCH_SLOT]
    names += [target_resource(name) for name in sorted(runs_here)]
    names += [hardware_resource(slug) for slug in sorted(slugs)]
    return dict.fromkeys(names, float(slots))
