"""A step's frames on every core: `each`.

Most of a step's time goes to one frame after another: read it, compute, write the
product. numpy, scipy and astropy's FITS input and output release Python's lock (the
GIL) for most of that work, so a second thread keeps the second core busy while the
first is in Python, without copying frames into other processes or pickling the
notebook's own functions (a process pool would need both). Measured on this project's
2-core machine: 05's sky on 8 frames of 2048² took 8.0 s in one thread and 5.3 s in
two, with the same numbers.

A function given to `each` must not change state that another frame's call reads: it
reads its own frame, writes its own product and returns what the notebook collects;
the notebook puts the results together afterwards, in the frames' order. Nor may it
learn anything from catching warnings: Python's warning filters and records are one
for all threads, so a warning raised in one call can land in another's record
(`fitsio.open_fits` checks a file's length and DATASUM itself for that reason);
silencing warnings for display is harmless.
"""

from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor


def threads(workers=0):
    """How many threads ``workers`` asks for: 0 (or None) is one per core."""
    return int(workers) if workers and workers > 0 else (os.cpu_count() or 1)


def each(func, items, *, workers=0, progress=None, one_openmp_thread=False):
    """``[func(item) for item in items]``, by `threads` (``workers``) threads at once.

    The results come back in the order of ``items`` whichever finishes first;
    ``progress(1)`` is called once per item, in that order. The first item (in order)
    whose call raises stops the rest: calls not yet started are cancelled, the error is
    raised as it was. One thread runs the calls in this thread, one after another.

    ``one_openmp_thread`` holds each call, when there are several threads, to one
    OpenMP thread of its own (``threadpoolctl``; the limit is per thread): for work that
    runs OpenMP loops (astroscrappy), whose own threads would otherwise compete with the
    other calls' for the same cores.

    >>> each(lambda x: x * x, range(5), workers=2)
    [0, 1, 4, 9, 16]
    """
    items = list(items)
    n = min(threads(workers), len(items))
    out = []
    if n <= 1:
        for item in items:
            out.append(func(item))
            if progress:
                progress(1)
        return out
    if one_openmp_thread:
        func = _one_openmp_thread(func)
    func = _giving_back(func)
    give_back_memory()   # what the notebook freed before the loop, before two frames are held
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(func, item) for item in items]
        try:
            for f in futures:
                out.append(f.result())
                if progress:
                    progress(1)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return out


def give_back_memory():
    """Return the pages the process has freed to the system (glibc's ``malloc_trim``).

    glibc keeps freed memory in its heaps for reuse, one heap per thread that allocated
    (an "arena"): what one frame's thread freed is not reused by the other thread, nor
    by the notebook's own thread after the loop, and stays counted in the process's
    memory. ``malloc_trim`` hands the free pages of every heap back (a few ms). Where
    the C library is not glibc it does nothing.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def _giving_back(func):
    def call(item):
        try:
            return func(item)
        finally:
            give_back_memory()
    return call


def _one_openmp_thread(func):
    def limited(item):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="openmp"):
            return func(item)
    return limited
