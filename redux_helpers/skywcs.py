"""Sky coordinates of an image: its celestial WCS and its pixel scale, in one place.

Every step that places pixels on the sky asks here: `celestial_wcs` reads a header's
RA/Dec axes (or says there are none), `pixel_area_arcsec2` the area of a pixel on the
sky and `pixel_scale_arcsec` its side, the square root of its area (the geometric mean of the two axes' scales, which
is what an area-based quantity like a surface brightness needs).

>>> from astropy.io import fits
>>> h = fits.Header({"NAXIS": 2, "NAXIS1": 10, "NAXIS2": 10, "CTYPE1": "RA---TAN",
...                  "CTYPE2": "DEC--TAN", "CRVAL1": 10.0, "CRVAL2": 20.0, "CRPIX1": 5.0,
...                  "CRPIX2": 5.0, "CDELT1": -0.5 / 3600, "CDELT2": 0.5 / 3600})
>>> round(pixel_scale_arcsec(celestial_wcs(h)), 6)
0.5
>>> celestial_wcs(fits.Header({"NAXIS": 2})) is None
True
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_area

from .errors import ReduxError


def celestial_wcs(header, *, required=False, what="image"):
    """The celestial (RA/Dec) part of a header's WCS, or None where it has none.

    ``header`` may also be a `~astropy.wcs.WCS`. With ``required``, an image without sky
    axes raises a `ReduxError` naming ``what`` instead of giving None.
    """
    if isinstance(header, WCS):
        w = header
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            w = WCS(header)
    if w.has_celestial and w.celestial.pixel_n_dim == 2:
        return w.celestial
    if required:
        msg = (f"the {what} has no celestial WCS (RA/Dec axes): its pixels cannot be placed "
               "on the sky; give a file with a WCS, or solve one (e.g. astrometry.net)")
        raise ReduxError(msg)
    return None


def pixel_scale_arcsec(wcs) -> float:
    """Side of a pixel on the sky in arcsec: the square root of its area at the reference pixel."""
    w = celestial_wcs(wcs, required=True)
    return math.sqrt(proj_plane_pixel_area(w)) * 3600.0


def pixel_area_arcsec2(wcs) -> float:
    """Area of a pixel on the sky in arcsec² at the reference pixel (`pixel_scale_arcsec` squared)."""
    return float(proj_plane_pixel_area(celestial_wcs(wcs, required=True)) * 3600.0 ** 2)


def world_of(w, x, y):
    """(lon, lat) in degrees of pixels (0-based x, y) of a celestial WCS, whatever its axis order."""
    values = w.pixel_to_world_values(x, y)
    return np.asarray(values[w.wcs.lng], float), np.asarray(values[w.wcs.lat], float)


def pixel_of(w, lon, lat):
    """Pixel (x, y), 0-based, of sky points (degrees) in a celestial WCS, whatever its axis order."""
    args = [None, None]
    args[w.wcs.lng], args[w.wcs.lat] = lon, lat
    x, y = w.world_to_pixel_values(*args)
    return np.asarray(x, float), np.asarray(y, float)
