"""What made a product: step, inputs, calibration files and package version in its header.

Short FITS keywords (8 characters or fewer) carry what a program reads back;
``HISTORY`` lines carry the full story for a person.

>>> from astropy.io import fits
>>> h = stamp(fits.Header(), step="01_superbias", inputs=["b1.fits", "b2.fits"],
...           params={"sigma": 3.0})
>>> h["REDXSTEP"], h["NINPUTS"]
('01_superbias', 2)
"""

from __future__ import annotations

from pathlib import Path

from astropy.io import fits

from . import __version__

#: Header keyword naming the calibration file of each kind used on a frame.
MASTER_KEYS = {"bias": "BIASFILE", "dark": "DARKFILE", "flat": "FLATFILE",
               "crmask": "CRMFILE", "badpix": "BPMFILE"}


def stamp(header: fits.Header | None, *, step: str, inputs=(), masters: dict | None = None,
          params: dict | None = None) -> fits.Header:
    """Return a copy of ``header`` that says which step made it, from what, and how.

    Parameters
    ----------
    header : `~astropy.io.fits.Header` or None
        The header to extend (not modified).
    step : str
        The notebook step, e.g. ``'04_calibrate'``.
    inputs : sequence of path-like
        The files the product was made from.
    masters : dict, optional
        Calibration files used, by kind (``bias``, ``dark``, ``flat``, ``crmask``).
    params : dict, optional
        The choices that shaped the product (sigma, method, ...).
    """
    h = fits.Header() if header is None else header.copy()
    h["REDXSTEP"] = (step, "redux step that made this file")
    h["REDXVER"] = (__version__, "redux version")
    inputs = [Path(p).name for p in inputs]
    h["NINPUTS"] = (len(inputs), "number of input frames")
    for kind, path in (masters or {}).items():
        key = MASTER_KEYS.get(kind, kind.upper()[:8])
        h[key] = (Path(path).name if path else "none", f"{kind} calibration file used")
    for name in inputs:
        h.add_history(f"{step}: input {name}")
    for name, value in (params or {}).items():
        h.add_history(f"{step}: {name}={value}")
    return h


def history(header: fits.Header, step: str | None = None) -> list[str]:
    """The ``HISTORY`` lines of a header, optionally only those of one step."""
    lines = [str(x) for x in header.get("HISTORY", [])]
    return [x for x in lines if step is None or x.startswith(f"{step}:")]
