"""Which frames go into a stack: the reference, each frame's checks, its factor to e-/s.

Notebook 07 asks three questions of every light frame before it is registered and
resampled; the answers are decisions, so they live here, tested, not in the notebook:

* `choose_reference` — the frame whose pixel grid every stack is on: the one the user
  named, else the first light of the continuum filter with a product, else the first
  light with a product;
* `read_checked` — the frame's newest product, refused (`ReduxError`, with the reason)
  when a stack can't use it: no product, another binning or pixel grid, no uncertainty
  plane, a header that names another filter than the inventory, no usable pixel;
* `rate_factor` — the factor that turns the frame's electrons into e-/s, and, when an
  extinction coefficient is given, into e-/s above the atmosphere.

>>> from astropy.io import fits
>>> h = fits.Header({"EXPTIME": 100.0, "BUNIT": "electron"})
>>> rate_factor(h)
(0.01, 'not corrected for extinction')
>>> factor, note = rate_factor(h, k=0.1, airmass=1.5)
>>> round(factor, 6), note
(0.011482, 'k = 0.1 mag/airmass, X = 1.500')
"""

from __future__ import annotations

import numpy as np

from . import fitsio, headers, provenance
from .errors import ReduxError

__all__ = ["choose_reference", "rate_factor", "read_checked"]


def choose_reference(lights, latest, *, reference=None, continuum=None):
    """The inventory row of the reference frame.

    ``lights`` are the inventory's light rows, ``latest`` a function of a frame's name
    giving its product's path or None (`targets.Paths.latest_frame`). ``reference`` (a
    file name, with or without ``.fits``) wins when given; else the first light of the
    ``continuum`` filter that has a product, else the first light that has one.
    """
    if reference:
        chosen = [r for r in lights if r["file"] in (reference, f"{reference}.fits")]
        if not chosen:
            names = ", ".join(str(r["file"]) for r in lights)
            raise ReduxError(f"reference '{reference}' is not a light frame of this target: {names}")
        row = chosen[0]
        if latest(row["file"]) is None:
            raise ReduxError(f"the reference {row['file']} has no product from 06_badpix or "
                             "05_background: run those notebooks first, or choose another "
                             "reference")
        return row
    made = [r for r in lights if latest(r["file"]) is not None]
    if not made:
        raise ReduxError("no light frame has a product from 06_badpix or 05_background: "
                         "run those notebooks first")
    return ([r for r in made if r["filter"] == continuum] or made)[0]


def read_checked(path, row, *, ref_row, ref_shape, settings=None):
    """(product, bad) of a frame a stack can use; `ReduxError` saying why if it can't.

    ``path`` is the frame's newest product (None if it has none), ``row`` its inventory
    row, ``ref_row`` and ``ref_shape`` the reference's row and pixel grid. ``bad`` is True
    where a pixel is flagged or NaN.
    """
    if path is None:
        raise ReduxError("no product from 06_badpix or 05_background (04 calibrates only "
                         f"frames of the lights' usual binning; this one is {row['binning']})")
    if row["binning"] != ref_row["binning"]:
        raise ReduxError(f"binning {row['binning']} differs from the reference's "
                         f"{ref_row['binning']}: a stack needs one pixel size")
    p = fitsio.read_product(path)
    if p.data.shape != tuple(ref_shape):
        raise ReduxError(f"{p.data.shape[1]} x {p.data.shape[0]} pixels, the reference "
                         f"{ref_shape[1]} x {ref_shape[0]}: a stack needs one pixel grid")
    if p.uncertainty is None:
        raise ReduxError("no UNCERT plane: its pixels can't be weighted (run 04-06 on it)")
    said = headers.filter_name(p.header, settings=settings) or row["filter"]
    if said != row["filter"]:
        raise ReduxError(f"its header says filter '{said}', the inventory '{row['filter']}': "
                         "one of them is wrong, and a stack never mixes filters")
    bad = (p.mask > 0) | ~np.isfinite(p.data)
    if bad.all():
        raise ReduxError("no usable pixel: every pixel is NaN or flagged")
    return p, bad


def rate_factor(header, *, k=None, airmass=np.nan):
    """(factor to e-/s, note): 1/EXPTIME (frames in electrons), times 10**(0.4 k X).

    ``k`` is the filter's extinction coefficient (mag/airmass), None not to correct. A
    frame 04 already corrected (its HISTORY says so) or in e-/s (``BUNIT``) is not
    scaled twice. A correction without an airmass is refused, with the manifest line
    that gives one.
    """
    per_second = str(header.get("BUNIT", "")).strip() == "electron/s"  # 04 with per_second
    factor = 1.0 if per_second else 1.0 / float(header["EXPTIME"])
    if k is None:
        return factor, "not corrected for extinction"
    if "04_calibrate: extinction_correct=True" in provenance.history(header, "04_calibrate"):
        return factor, "corrected for extinction in 04"
    if not np.isfinite(airmass):
        raise ReduxError("no AIRMASS, so it can't be corrected for extinction; add it with "
                         "header_overrides in the manifest or set extinction_correct = False")
    return factor * 10 ** (0.4 * k * airmass), f"k = {k} mag/airmass, X = {airmass:.3f}"
