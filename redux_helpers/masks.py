"""The one bitmask every product carries, with named bits (after PypeIt's ``BPM``).

A pixel's ``MASK`` value is the sum of the bits that apply to it; zero means clean.
The bit meanings are written into the header of every mask (``MASKB<n>`` keywords),
so a product explains itself.

>>> import numpy as np
>>> m = np.zeros(3, np.uint16)
>>> m = flag(m, np.array([True, False, True]), "COSMIC")
>>> m = flag(m, np.array([True, False, False]), "SATURATED")
>>> names(int(m[0]))
['SATURATED', 'COSMIC']
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits

#: Bit name -> (value, meaning).
BITS = {
    "BAD": (1, "bad pixel (bad-pixel mask)"),
    "HOT": (2, "hot pixel (high dark current)"),
    "BADCOL": (4, "bad or dead column"),
    "SATURATED": (8, "raw value at or above saturation"),
    "COSMIC": (16, "cosmic-ray hit"),
    "LOWFLAT": (32, "flat near zero: not divided by"),
    "NODATA": (64, "no valid data"),
    "REPAIRED": (128, "value interpolated"),
}


def bit(name: str) -> int:
    """The value of a named bit."""
    try:
        return BITS[name][0]
    except KeyError:
        msg = f"unknown mask bit '{name}'; known bits: {', '.join(BITS)}"
        raise ValueError(msg) from None


def flag(mask, where, name):
    """Return ``mask`` with bit ``name`` set where ``where`` is true (input unchanged)."""
    out = np.array(mask, dtype=np.uint16, copy=True)
    out[np.asarray(where, bool)] |= np.uint16(bit(name))
    return out


def has(mask, name):
    """Boolean array: where bit ``name`` is set."""
    return (np.asarray(mask, np.uint16) & np.uint16(bit(name))) > 0


def names(value: int) -> list[str]:
    """The names of the bits set in one mask value."""
    return [n for n, (v, _) in BITS.items() if value & v]


def header() -> fits.Header:
    """Header cards that document every bit (``MASKB0`` = 'BAD', ...)."""
    h = fits.Header()
    for n, (v, meaning) in BITS.items():
        h[f"MASKB{int(np.log2(v))}"] = (n, meaning)
    return h
