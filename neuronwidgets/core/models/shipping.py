"""Pickling a model that transformers has hooked: how a :class:`~neuronwidgets.core.models.ModelHandle`
travels to Dask workers (or anywhere ``pickle`` takes it).

transformers ≥ 5 installs output-capturing forward hooks on a model's blocks the first time it is called
with ``output_hidden_states=True`` (or ``output_attentions=True``) and keeps them: local closures, which
neither ``pickle`` nor ``cloudpickle`` can serialise ("Can't pickle local object
'install_output_capuring_hook.<locals>.output_capturing_hook'"). A model a user had once called that way
could not be shipped. :func:`dumps` pickles the model with each such hook replaced by a recipe that
installs the same hook (same captured output, index and first-state rule) again on unpickling, so the
copy behaves as the original, ``output_hidden_states`` included; the original model is not touched.
"""

from __future__ import annotations

import io
import pickle
import types
from typing import Any

_HOOK = "install_output_capuring_hook.<locals>.output_capturing_hook"  # transformers' own spelling


def _output_capturing_hook(key: str, index: int, capture_initial_hidden_state: bool) -> Any:
    """A fresh transformers output-capturing hook with these settings (installed on a throwaway module
    and taken from it, since transformers builds the hook inside its installer)."""
    from torch import nn
    from transformers.utils.output_capturing import install_output_capuring_hook

    scratch = nn.Module()
    install_output_capuring_hook(scratch, key, index, capture_initial_hidden_state)
    return next(iter(scratch._forward_hooks.values()))


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.FunctionType) and obj.__qualname__.endswith(_HOOK) and obj.__closure__:
            cells = dict(zip(obj.__code__.co_freevars, (c.cell_contents for c in obj.__closure__)))
            args = (cells["key"], cells["index"], cells["capture_initial_hidden_state"])
            return _output_capturing_hook, args
        return NotImplemented


def dumps(obj: Any) -> bytes:
    """``pickle.dumps(obj)``, with transformers' output-capturing hooks pickled as recipes.

    Args:
        obj: Anything picklable but for those hooks (a model, or a tuple holding it and its blocks).

    Returns:
        The pickle's bytes (``pickle.loads`` reads them).

    Example:
        >>> import pickle
        >>> pickle.loads(dumps({"a": 1}))
        {'a': 1}
    """
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()
