"""Where each site lives in a model, and scoped hooks that read (and later edit) its activations.

This is the one place that maps a :class:`~neuronwidgets.core.models.addresses.Site` to a module:

- ``embed.resid``     the input of block 0 (a forward pre-hook), i.e. the embedding output;
- ``layer.{i}.resid`` the output of block ``i`` (a forward hook; the first element when it is a tuple);
- ``layer.{i}.mlp``   the input of block ``i``'s down projection (a forward pre-hook);
- ``layer.{i}.mlp_out`` the output of block ``i``'s down projection (a forward hook).

Hooks are always removed in ``finally``, so a model never keeps one after an error or an interrupt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .addresses import Site, forward_order

if TYPE_CHECKING:
    from .handle import ModelHandle

# fn(site, activation) -> replacement activation or None (keep)
SiteFn = Callable[[Site, torch.Tensor], "torch.Tensor | None"]


class StopForward(Exception):
    """Raised by a hook to end a forward pass once every needed site has been read."""


def site_target(handle: ModelHandle, site: Site) -> tuple[nn.Module, str]:
    """The module that carries ``site`` and whether its activation is the module's input (``"pre"``)
    or output (``"post"``)."""
    if site.component == "resid":
        if site.layer < 0:
            return handle.block(0), "pre"
        return handle.block(site.layer), "post"
    if site.component == "mlp":
        return handle.down_proj(site.layer), "pre"
    if site.component == "mlp_out":
        return handle.down_proj(site.layer), "post"
    raise ValueError(f"unknown component {site.component!r}")


def _pre_hook(site: Site, fn: SiteFn) -> Callable[..., Any]:
    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            new = fn(site, args[0])
            if new is not None:
                return (new, *args[1:]), kwargs
            return None
        new = fn(site, kwargs["hidden_states"])
        if new is not None:
            return args, {**kwargs, "hidden_states": new}
        return None

    return hook


def _post_hook(site: Site, fn: SiteFn) -> Callable[..., Any]:
    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        tensor = output[0] if isinstance(output, tuple) else output
        new = fn(site, tensor)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook


@contextmanager
def site_hooks(handle: ModelHandle, sites: Sequence[Site], fn: SiteFn) -> Iterator[None]:
    """Call ``fn(site, activation)`` at each site during forward passes inside the block; a returned
    tensor replaces the activation. Hooks are removed on exit, whatever happens inside."""
    handles = []
    try:
        for site in sites:
            module, where = site_target(handle, site)
            if where == "pre":
                handles.append(module.register_forward_pre_hook(_pre_hook(site, fn), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(_post_hook(site, fn)))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def capture(
    handle: ModelHandle, sites: Sequence[Site], stop_early: bool = True
) -> Iterator[dict[Site, torch.Tensor]]:
    """Record the activation at each site (``[batch, seq, width]``) of the forward passes run inside.

    With ``stop_early`` the forward pass ends (via :class:`StopForward`, which the caller catches) as soon
    as the last needed site is read, so nothing past it, such as a large LM head, is computed.
    """
    store: dict[Site, torch.Tensor] = {}
    last = max(sites, key=forward_order) if sites else None

    def record(site: Site, act: torch.Tensor) -> None:
        store[site] = act
        if stop_early and site == last and len(store) == len(sites):
            raise StopForward
        return None

    with site_hooks(handle, sites, record):
        yield store


def run_capturing(
    handle: ModelHandle, sites: Sequence[Site], inputs: dict[str, torch.Tensor]
) -> dict[Site, torch.Tensor]:
    """One forward pass that returns the activations at ``sites``."""
    with capture(handle, sites) as store, suppress(StopForward):
        handle.model(**inputs)
    missing = [s.name for s in sites if s not in store]
    if missing:
        raise RuntimeError(
            f"the forward pass never reached {', '.join(missing)}: is the model's layout supported?"
        )
    return dict(store)
