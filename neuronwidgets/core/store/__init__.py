"""The activation store: extraction (:func:`extract_activations`), the :class:`Activations` type (in memory
or on disk, read lazily by site, neuron and sentence), block-wise streaming over it, and design matrices
(rows, columns, labels and sentence-level splits) that probes and analyses read from it.
"""

from .activations import Activations
from .design import Split, as_activations, split_sentences
from .extraction import extract_activations, resolve_sites

__all__ = [
    "Activations",
    "Split",
    "as_activations",
    "extract_activations",
    "resolve_sites",
    "split_sentences",
]
