"""Stable string addresses for neurons: the one place they are parsed and formatted.

A *site* is a place in the network whose activations are a vector per token:

- ``embed.resid``     the residual stream entering the first block (the embedding output);
- ``layer.{i}.resid`` the residual stream leaving block ``i`` (0-based, like Hugging Face module names);
- ``layer.{i}.mlp``   the MLP neurons of block ``i``: the activations that feed its down/output projection;
- ``layer.{i}.mlp_out`` the MLP output of block ``i``: what its down/output projection returns (``d_model``
  wide, before it is added to the residual stream; Vig et al. 2020's "neurons"). Asked for by name only:
  ``"all"`` and the defaults mean ``resid`` and ``mlp``.

A *neuron address* is a site plus an index: ``"layer.3.mlp:117"``, ``"embed.resid:42"``. Addresses are
the same for every architecture, so a ranking, a heatmap and an ablation can pass neurons to each other
as strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: every component an address may name, in forward order within a block (``resid`` is the block output)
COMPONENTS: tuple[str, ...] = ("resid", "mlp", "mlp_out")
#: what "all components" means (extraction, ``handle.sites()``): the MLP output is asked for by name
DEFAULT_COMPONENTS: tuple[str, ...] = ("resid", "mlp")
_ORDER = {"mlp": 0, "mlp_out": 1, "resid": 2}


def forward_order(site: Site) -> tuple[int, int]:
    """Sort key putting sites in the order a forward pass reaches them (embeddings first; within a block
    the MLP neurons, then the MLP output, then the block output)."""
    return (site.layer, _ORDER.get(site.component, 2))


_SITE_RE = re.compile(r"^(?:(?P<embed>embed)|layer\.(?P<layer>\d+))\.(?P<component>[a-z_]+)$", re.ASCII)


@dataclass(frozen=True, order=True)
class Site:
    """A place in the network with one activation vector per token.

    Attributes:
        layer: ``-1`` for the embeddings (``embed.resid``), else the 0-based block index.
        component: ``"resid"`` (the residual stream), ``"mlp"`` (the MLP neurons) or ``"mlp_out"`` (the
            MLP output).

    Example:
        >>> Site(3, "mlp").name
        'layer.3.mlp'
    """

    layer: int
    component: str

    @property
    def name(self) -> str:
        if self.layer < 0:
            return f"embed.{self.component}"
        return f"layer.{self.layer}.{self.component}"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, order=True)
class NeuronAddress:
    """One neuron: a :class:`Site` and an index into its activation vector.

    Attributes:
        site: Where the neuron is.
        index: Its position in the site's activation vector (0-based).

    Example:
        >>> parse_neuron("layer.3.mlp:117") == NeuronAddress(Site(3, "mlp"), 117)
        True
    """

    site: Site
    index: int

    @property
    def name(self) -> str:
        return f"{self.site.name}:{self.index}"

    @property
    def layer(self) -> int:
        return self.site.layer

    @property
    def component(self) -> str:
        return self.site.component

    def __str__(self) -> str:
        return self.name


def parse_site(text: str | Site) -> Site:
    """Parse ``"layer.3.mlp"`` / ``"embed.resid"`` into a :class:`Site` (no model check).

    Args:
        text: A site name, or a :class:`Site` (returned as it is).

    Returns:
        The site.

    Raises:
        TypeError: If ``text`` is neither a string nor a :class:`Site`.
        ValueError: If the string is not ``embed.resid``, ``layer.<i>.resid``, ``layer.<i>.mlp`` or
            ``layer.<i>.mlp_out``.

    Example:
        >>> parse_site("layer.3.mlp")
        Site(layer=3, component='mlp')
    """
    if isinstance(text, Site):
        return text
    if not isinstance(text, str):
        raise TypeError(f"a site is a string such as 'layer.3.mlp', got {type(text).__name__}")
    m = _SITE_RE.match(text.strip())
    if m is None:
        raise ValueError(
            f"cannot parse site {text!r}: expected 'embed.resid', 'layer.<i>.resid', 'layer.<i>.mlp' or "
            "'layer.<i>.mlp_out' "
            "(e.g. 'layer.3.mlp')"
        )
    component = m.group("component")
    if component not in COMPONENTS:
        raise ValueError(
            f"unknown component {component!r} in {text!r}: choose one of {', '.join(COMPONENTS)}"
        )
    if m.group("embed"):
        if component != "resid":
            raise ValueError(f"the embeddings only have a residual stream: use 'embed.resid', not {text!r}")
        return Site(-1, component)
    return Site(int(m.group("layer")), component)


def parse_neuron(text: str | NeuronAddress) -> NeuronAddress:
    """Parse ``"layer.3.mlp:117"`` into a :class:`NeuronAddress` (no model check).

    Args:
        text: An address ``"<site>:<index>"``, or a :class:`NeuronAddress` (returned as it is).

    Returns:
        The address.

    Raises:
        TypeError: If ``text`` is neither a string nor a :class:`NeuronAddress`.
        ValueError: If the string is not ``<site>:<index>`` with a valid site.

    Example:
        >>> parse_neuron("embed.resid:42").index
        42
    """
    if isinstance(text, NeuronAddress):
        return text
    if not isinstance(text, str):
        raise TypeError(f"a neuron address is a string such as 'layer.3.mlp:117', got {type(text).__name__}")
    site_text, sep, index_text = text.strip().rpartition(":")
    if not sep or not (index_text.isascii() and index_text.isdigit()):
        raise ValueError(
            f"cannot parse neuron address {text!r}: expected '<site>:<index>', e.g. 'layer.3.mlp:117' "
            "or 'embed.resid:42'"
        )
    return NeuronAddress(parse_site(site_text), int(index_text))


def parse_neurons(neurons: str | NeuronAddress | Iterable[str | NeuronAddress]) -> list[NeuronAddress]:
    """Parse one address or many into a list (order kept, duplicates rejected).

    Args:
        neurons: One address (string or :class:`NeuronAddress`) or an iterable of them.

    Returns:
        The addresses, in the order given.

    Raises:
        ValueError: If an address does not parse or a neuron is listed twice.

    Example:
        >>> [n.name for n in parse_neurons(["layer.0.mlp:1", "layer.2.resid:7"])]
        ['layer.0.mlp:1', 'layer.2.resid:7']
    """
    if isinstance(neurons, (str, NeuronAddress)):
        neurons = [neurons]
    out = [parse_neuron(n) for n in neurons]
    seen: set[NeuronAddress] = set()
    for n in out:
        if n in seen:
            raise ValueError(f"neuron {n.name} is listed twice")
        seen.add(n)
    return out


def site_names(sites: Iterable[Site]) -> list[str]:
    return [s.name for s in sites]
