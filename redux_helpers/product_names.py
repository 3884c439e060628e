"""Product file names: the one place where a filter or a raw frame becomes part of a name.

A filter is written into file names through `filter_part` only, so ``'5 0'`` and
``'H-alpha/6563'`` give names without spaces or slashes, and every step that looks a
product up by filter finds the one the step before wrote. The filter a stack holds is
read back from its header (``FILTER``), never parsed out of its name.

>>> filter_part("5 0")
'5_0'
>>> filter_part("")
'none'
"""

from __future__ import annotations

import re
from pathlib import Path

from astropy.io import fits

STACK_PREFIX = "stack_"


def filter_part(filt) -> str:
    """A file-name-safe form of a filter (or object) name: letters, digits, ``_.+-``."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(filt)).strip("_") or "none"


def stack_file(folder, filt) -> Path:
    """The stack of one filter in a step's folder: ``folder/stack_<filter>.fits``."""
    return Path(folder) / f"{STACK_PREFIX}{filter_part(filt)}.fits"


def stacks_in(folder) -> dict[str, Path]:
    """The stacks in a step's folder, by the filter their header names (``FILTER``).

    A stack without a ``FILTER`` keyword is known by its file name's part.
    """
    found = {}
    folder = Path(folder)
    if not folder.is_dir():
        return found
    for p in sorted(folder.glob(f"{STACK_PREFIX}*.fits")):
        try:
            filt = fits.getheader(p).get("FILTER")
        except OSError:
            filt = None
        found[str(filt) if filt not in (None, "") else
              p.name.removeprefix(STACK_PREFIX).removesuffix(".fits")] = p
    return found
