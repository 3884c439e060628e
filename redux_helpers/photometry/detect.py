"""Finding stars: `detect_stars` (DAOStarFinder on a frame with its uncertainty and mask, flagged and saturated sources dropped)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from astropy.table import Table

from .. import masks
from ..register import refine_centroids
from .constants import DETECT_COLUMNS

log = logging.getLogger(__name__)

def _bad_pixels(data, uncertainty=None, mask=None):
    """Pixels that can't be used: flagged in ``mask``, or not finite in data/uncertainty."""
    bad = ~np.isfinite(data)
    if uncertainty is not None:
        bad |= ~np.isfinite(np.asarray(uncertainty, float))
    if mask is not None:
        bad |= np.asarray(mask) > 0
    return bad


def _within(flags, x, y, radius):
    """Which positions (x, y) have a flagged pixel whose centre is within ``radius``."""
    ny, nx = flags.shape
    out = np.zeros(len(x), bool)
    if not flags.any():
        return out
    for i, box, d2 in _boxes_around((ny, nx), x, y, radius):
        out[i] = bool(flags[box][d2 <= radius * radius].any())
    return out


def _boxes_around(shape, x, y, radius):
    """(index, box slices, squared distance of its pixels) for each position's box of ``radius``."""
    ny, nx = shape
    r = int(np.ceil(radius))
    for i, (cx, cy) in enumerate(zip(x, y, strict=True)):
        x0, x1 = max(int(np.floor(cx)) - r, 0), min(int(np.ceil(cx)) + r + 1, nx)
        y0, y1 = max(int(np.floor(cy)) - r, 0), min(int(np.ceil(cy)) + r + 1, ny)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        yield i, (slice(y0, y1), slice(x0, x1)), (xx - cx) ** 2 + (yy - cy) ** 2


def _empty_detections() -> Table:
    dtypes = (int, float, float, float, float, float, float, bool, bool)
    return Table(names=DETECT_COLUMNS, dtype=dtypes)


def detect_stars(data, uncertainty, mask=None, *, fwhm=3.5, nsigma=5.0, saturate=None,
                 min_separation=None) -> Table:
    """Detect and centre the stars of a frame; every star found is kept, brightest first.

    Parameters
    ----------
    data : 2-D array
        A background-subtracted frame (e-/s).
    uncertainty : 2-D array
        Its 1-sigma uncertainty; the detection threshold is ``nsigma`` times the
        median uncertainty of the good pixels, i.e. the noise of the sky, which is
        what a faint star must stand above.
    mask : 2-D uint16 array, optional
        The bitmask (`redux_helpers.masks`); ``mask > 0`` pixels are flagged.
    fwhm : float
        Seeing in pixels (the DAOFIND kernel and the centroid window).
    nsigma : float
        Detection threshold in units of the sky noise (DAOFIND's, which scales it by
        its kernel as the original DAOFIND does).
    saturate : float, optional
        A star whose peak (in ``data``'s units) reaches this is marked ``saturated``.
        A star with a ``SATURATED`` pixel within one FWHM is marked so whatever the
        value: its core may have been replaced, or be already below the ceiling once
        the bias and the flat are removed.
    min_separation : float, optional
        Minimum distance between two detections, pixels; `None` keeps photutils'
        default (2.5 FWHM since photutils 3.0), 0 disables it.

    Returns
    -------
    astropy.table.Table
        ``id`` (1..n, brightest first), ``x``, ``y`` (0-based windowed centres),
        ``peak``, ``sharpness``, ``roundness1``, ``roundness2`` (DAOFIND's),
        ``flagged`` (a masked or non-finite pixel within 1 FWHM of the centre: its
        flux and centre may be biased) and ``saturated``. A frame without stars gives
        an empty table with these columns, not an error: the caller decides what
        that means.

    Notes
    -----
    Flagged pixels are set to zero before detection rather than masked: DAOFIND
    ignores masked pixels when it looks for peaks, so a star with a cosmic ray or a
    saturated core would vanish instead of being found and flagged.
    """
    from photutils.detection import DAOStarFinder

    data = np.asarray(data, float)
    unc = np.broadcast_to(np.asarray(uncertainty, float), data.shape)
    bad = _bad_pixels(data, unc, mask)
    if bad.all():
        log.warning("detect_stars: every pixel is flagged or not finite")
        return _empty_detections()
    noise = float(np.median(unc[~bad]))
    if not np.isfinite(noise) or noise <= 0:
        log.warning("detect_stars: the median uncertainty is %s; nothing detected", noise)
        return _empty_detections()
    clean = np.where(bad, 0.0, data)
    finder = DAOStarFinder(nsigma * noise, fwhm, exclude_border=True,
                           min_separation=min_separation)
    with warnings.catch_warnings():      # "no sources found" is an answer here
        warnings.simplefilter("ignore")
        found = finder(clean)
    if found is None or len(found) == 0:
        return _empty_detections()
    found.sort("flux", reverse=True)
    x, y = refine_centroids(clean, found["x_centroid"], found["y_centroid"], fwhm=fwhm)
    flagged = _within(bad, x, y, fwhm)
    peak = np.asarray(found["peak"], float)
    saturated = np.zeros(len(x), bool) if saturate is None else peak >= saturate
    if mask is not None:
        saturated |= _within(masks.has(mask, "SATURATED"), x, y, fwhm)
    out = Table()
    out["id"] = np.arange(1, len(x) + 1)
    out["x"], out["y"], out["peak"] = x, y, peak
    for name in ("sharpness", "roundness1", "roundness2"):
        out[name] = np.asarray(found[name], float)
    out["flagged"], out["saturated"] = flagged, saturated
    return out


