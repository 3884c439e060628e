"""What made a product: step, inputs, calibration files and package version in its header.

Short FITS keywords (8 characters or fewer) carry what a program reads back;
``HISTORY`` lines carry the full story for a person. Every stamp also says when
(``DATE``, UTC) and, for a step run by ``redux run``, the step's fingerprint
(``REDXFP``, the one in its record ``.redux/<step>.json``; see
`redux_helpers.fingerprint`): the runner hands it to the notebook's kernel in the
environment variable `FINGERPRINT_ENV`, as ``<step>:<fingerprint>``. A notebook run by
hand has none (``REDXFP = 'none'``).

>>> from astropy.io import fits
>>> h = stamp(fits.Header(), step="01_superbias", inputs=["b1.fits", "b2.fits"],
...           params={"sigma": 3.0})
>>> h["REDXSTEP"], h["NINPUTS"]
('01_superbias', 2)
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:         # astropy is imported where a header is made (`stamp`): the
    from astropy.io import fits  # `redux` command reads this module's constant only

#: Environment variable through which the runner gives a step's kernel its fingerprint.
FINGERPRINT_ENV = "REDUX_FINGERPRINT"

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
    from astropy.io import fits

    h = fits.Header() if header is None else header.copy()
    h["REDXSTEP"] = (step, "redux step that made this file")
    h["REDXVER"] = (__version__, "redux version")
    h["DATE"] = (datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                 "UTC time this file was made")
    fp = step_fingerprint(step)
    if fp:       # 64 hex digits: the card has no room for a comment
        h["REDXFP"] = fp
    else:
        h["REDXFP"] = ("none", "no fingerprint: not run by redux run")
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


def masters_of(headers, kinds=("bias", "dark", "flat")) -> dict:
    """The calibration files a group of frames was made with, by kind, from their headers.

    For a product made of several frames (a stack): each kind's file names as the
    frames' headers give them (`MASTER_KEYS`), the distinct ones joined by ', ';
    None for a kind no frame names (`stamp` writes it as 'none').

    >>> from astropy.io import fits
    >>> h1, h2 = fits.Header({"FLATFILE": "superflat_Ha.fits"}), fits.Header()
    >>> masters_of([h1, h2], kinds=("flat", "dark"))
    {'flat': 'superflat_Ha.fits', 'dark': None}
    """
    found = {}
    for kind in kinds:
        key = MASTER_KEYS.get(kind, kind.upper()[:8])
        names = sorted({str(h[key]) for h in headers if h.get(key) not in (None, "", "none")})
        found[kind] = ", ".join(names) or None
    return found


def step_fingerprint(step: str) -> str | None:
    """The fingerprint the runner gave this run of ``step`` (`FINGERPRINT_ENV`), or None."""
    given = os.environ.get(FINGERPRINT_ENV, "")
    name, _, fp = given.partition(":")
    return fp if name == step and fp else None


def history(header: fits.Header, step: str | None = None) -> list[str]:
    """The ``HISTORY`` lines of a header, optionally only those of one step."""
    lines = [str(x) for x in header.get("HISTORY", [])]
    return [x for x in lines if step is None or x.startswith(f"{step}:")]
