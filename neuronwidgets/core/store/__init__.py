"""The activation store: extraction (:func:`extract_activations`), the :class:`Activations` type (in memory
or on disk, read lazily by site, neuron and sentence), block-wise streaming over it, and design matrices
(rows, columns, labels and sentence-level splits) that probes and analyses read from it.
"""

from .activations import Activations, migrate_store
from .design import Split, as_activations, split_sentences
from .extraction import extract_activations, resolve_sites
from .zarrstore import StoreCorruptionError

__all__ = [
    "Activations",
    "Split",
    "StoreCorruptionError",
    "as_activations",
    "extract_activations",
    "migrate_store",
    "resolve_sites",
    "split_sentences",
]
