"""What 09 searches: the mode (an Hα line image, or knots in one image), and its images.

* `choose_mode` — ``'line'`` when the target has an Hα and a continuum image,
  ``'knots'`` in one image when asked (``hii_image_filter``) or when the manifest names
  a galaxy and there is one image; ``''`` (nothing to do) otherwise, with the reason
  and what to set;
* `read_image` — one image as the search needs it: sky-subtracted data, a 1-sigma
  uncertainty (its ``UNCERT`` plane, else one from its sky's scatter), a bitmask with
  NaN pixels flagged ``NODATA``, and a note saying which;
* `check_same_grid` — two images' WCS put the same sky on the same pixels, or
  `ReduxError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from .. import fitsio, masks
from ..errors import ReduxError
from ..photometry import uncertainty_from_sky

__all__ = ["Image", "check_same_grid", "choose_mode", "read_image"]


def choose_mode(found, *, halpha=None, continuum=None, image_filter="", galaxy=False):
    """(mode, image filter, why nothing): what 09 can do with the images ``found``.

    ``found`` maps a filter to its image; ``halpha``/``continuum`` are the manifest's
    filter roles, ``image_filter`` the ``hii_image_filter`` parameter, ``galaxy`` whether
    the manifest names the galaxy.

    >>> choose_mode({"Ha": 1, "R": 2}, halpha="Ha", continuum="R")
    ('line', 'Ha', '')
    >>> choose_mode({"V": 1}, galaxy=True)
    ('knots', 'V', '')
    >>> choose_mode({"V": 1, "B": 2})[0]
    ''
    """
    if image_filter:
        if image_filter not in found:
            raise ReduxError(f"hii_image_filter = '{image_filter}': this target has no image of "
                             f"that filter (it has: {', '.join(found) or 'none'})")
        return "knots", image_filter, ""
    if halpha in found and continuum in found:
        return "line", halpha, ""
    if len(found) == 1 and galaxy:
        return "knots", next(iter(found)), ""
    why = ("no image at all (no stack from 07 or 08, no stacks: in the manifest)" if not found
           else f"no Halpha/continuum pair among its images ({', '.join(found)}) and no galaxy: "
           "in the manifest; a field is searched for knots only when asked (set hii_image_filter "
           "to one of them, or name the galaxy under galaxy: in the manifest)")
    return "", None, why


@dataclass
class Image:
    """An image as the search uses it; ``sky_rms`` is the noise of one sky pixel."""

    data: np.ndarray
    uncertainty: np.ndarray
    mask: np.ndarray
    header: fits.Header
    unit: str
    sky_rms: float
    note: str


def read_image(path) -> Image:
    """One image: sky-subtracted data, its uncertainty (UNCERT, else from its sky), mask."""
    p = fitsio.read_product(path)
    data = p.data.astype(float)
    mask = np.zeros(data.shape, np.uint16) if p.mask is None else p.mask
    mask = masks.flag(mask, ~np.isfinite(data), "NODATA")
    if p.uncertainty is not None:
        unc = p.uncertainty.astype(float)
        return Image(data, unc, mask, p.header, p.unit, float(np.nanmedian(unc[mask == 0])),
                     "its UNCERT plane")
    gain = p.header.get("GAIN")
    unc, sky, rms = uncertainty_from_sky(data, gain=gain, mask=mask)
    note = (f"no UNCERT plane: sky {sky:.4g} subtracted, noise {rms:.3g} per pixel"
            + (f" + Poisson through GAIN = {gain:g}" if gain else
               " (no GAIN in the header: the sources' own Poisson noise is left out)"))
    return Image(data - sky, unc, mask, p.header, p.unit, rms, note)


def check_same_grid(a: Image, b: Image, *, names=("Halpha", "continuum"), wcs=(None, None),
                    tolerance=0.5):
    """`ReduxError` unless ``a`` and ``b`` share one pixel grid: their shape, and their WCS
    (when both have one) agree to ``tolerance`` pixels at the four corners."""
    if a.data.shape != b.data.shape:
        raise ReduxError(f"the {names[0]} image is {a.data.shape[1]} x {a.data.shape[0]} px and "
                         f"the {names[1]} image {b.data.shape[1]} x {b.data.shape[0]}: they must "
                         "share one pixel grid (stack them together in 07, or resample one onto "
                         "the other)")
    wa, wb = wcs
    if wa is None or wb is None:
        return 0.0
    ny, nx = a.data.shape
    cx, cy = np.array([0, nx - 1, 0, nx - 1.0]), np.array([0, 0, ny - 1, ny - 1.0])
    rx, ry = wb.world_to_pixel(wa.pixel_to_world(cx, cy))
    off = float(np.max(np.hypot(rx - cx, ry - cy)))
    if off > tolerance:
        raise ReduxError(f"the {names[0]} and {names[1]} images are not on one pixel grid: "
                         f"their WCS differ by up to {off:.1f} px; align them first")
    return off
