"""Overlap the forward passes with what consumes their results (writing a store), or run the plain loop.

A store writer spends most of its time in Blosc and file writes, which release the GIL; the forward
passes leave the CPU partly idle between and inside batches. Running the writer in one background thread
while the next group of sentences goes through the model hides part of its cost. One consumer thread, fed
in order, one item handed over at a time: while it consumes item g the producer computes g + 1 and then
waits until the consumer takes it, so at most two items live at once (a queue with a waiting slot would
hold three: 256 MB more for a group of float32 rows). The results (and the order of the store's write
protocol) are exactly those of the plain loop. The streaming statistics use the plain loop
(``overlap=False``): in a background thread their NumPy work slowed torch's two threads on 2 cores more
than it saved.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

_DONE = object()


def _glibc_trim() -> Callable[[], Any] | None:
    """glibc's ``malloc_trim(0)``, or ``None`` where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


_TRIM = _glibc_trim()


def release_free_memory() -> None:
    """Hand the free pages that glibc's allocator holds back to the system (nothing elsewhere).

    The forward passes (torch's activations) and the consumer allocate and free hundreds of MB per group
    in two threads, so in two arenas; glibc returns only the free memory at the top of a heap, and what is
    freed in the middle stays resident. Measured on a 100k-sentence run: 445 MB free but held at the end.
    ``malloc_trim(0)`` gives those pages back (a few ms per call; once per consumed item).
    """
    if _TRIM is not None:
        _TRIM()


def consume_overlapped(items: Iterable[T], consume: Callable[[T], Any], *, overlap: bool = True) -> None:
    """Call ``consume(item)`` for every item of ``items``, in order, in a background thread while the
    next item is produced.

    An exception in either the producer or the consumer stops both and is raised here (the consumer's
    first), after the thread has finished: nothing is left running.

    Args:
        items: An iterable (typically a generator that runs forward passes).
        consume: Called once per item, in the order of ``items``, in one thread.
        overlap: ``False`` runs the plain loop in this thread (same results).

    Returns:
        None.

    Example:
        >>> out = []
        >>> consume_overlapped(iter(range(3)), out.append)
        >>> out
        [0, 1, 2]
    """
    if not overlap:
        for item in items:
            consume(item)
            del item
            release_free_memory()
        return
    box: queue.Queue[Any] = queue.Queue(maxsize=1)
    taken = threading.Semaphore(0)  # a hand-over: the producer waits until the consumer has taken an item
    failed: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        while True:
            item = box.get()
            if item is _DONE:
                return
            taken.release()
            if stop.is_set():
                continue  # drain after a failure, so the producer never blocks
            try:
                consume(item)
            except BaseException as exc:
                failed.append(exc)
                stop.set()
            item = None  # not kept alive while waiting for the next one
            release_free_memory()

    thread = threading.Thread(target=worker, name="neuronwidgets-consumer", daemon=True)
    thread.start()
    try:
        for item in items:
            if stop.is_set():
                break
            box.put(item)
            taken.acquire()  # so at most two items live: the one consumed and the one being produced
            del item
    finally:
        box.put(_DONE)
        thread.join()
    if failed:
        raise failed[0]
