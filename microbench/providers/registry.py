"""Finding op providers: built-in or a vendor's, each registers under the entry-point group
`asicperf.microbench` (name = provider name, value = `module:Class`), so a vendor's package adds
its kernels the way it adds a target."""

from __future__ import annotations

from ir.errors import AsicperfError
from microbench.providers.base import Provider
from targets.plugins import PluginEntry, PluginGroup

ENTRY_POINT_GROUP = "asicperf.microbench"


class UnknownProviderError(AsicperfError):
    """No provider has that name, or it cannot load."""


PROVIDERS: PluginGroup[Provider] = PluginGroup(
    ENTRY_POINT_GROUP, "provider", Provider, UnknownProviderError
)


def discover() -> dict[str, PluginEntry[Provider]]:
    """Every provider by name, each imported (or with the reason it failed)."""
    return PROVIDERS.discover()


def get_provider(name: str) -> Provider:
    """An instance of the provider called `name` (or `module:Class`); a one-line error otherwise."""
    return PROVIDERS.load(name)()
