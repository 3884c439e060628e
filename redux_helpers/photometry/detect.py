"""Finding stars for photometry: `detect_stars` (the suite's one finder, `stars.daofind`, on a frame
with its uncertainty and mask; every star kept, flagged and saturated ones marked)."""

from __future__ import annotations

import logging

import numpy as np
from astropy.table import Table

from .. import masks
from ..stars import daofind, near_flagged, refine_centroids
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


#: Where the sky's noise is more than this times the frame's median, the threshold rises
#: with it (`_louder_sky`); below, the frame is searched as it is.
LOUDER_SKY = 1.1


def _louder_sky(unc, bad, noise, fwhm):
    """How many times the median noise the sky's noise is, where that is over `LOUDER_SKY`.

    A stack's edges, covered by fewer frames, are two or three times noisier than its
    middle; one threshold for the whole frame (the median noise) finds hundreds of noise
    peaks there. The sky's noise is the uncertainty's running median over 8 FWHM (a
    star's own Poisson noise is too small an area to move it); the frame is divided by
    it, in units of the median, where it is over `LOUDER_SKY` times the median, so a
    detection there stands as far above its own sky as elsewhere. None when nowhere is.
    """
    from ..smoothing import running_median

    sky = running_median(np.where(bad, noise, unc), max(15, int(round(8 * fwhm))) | 1) / noise
    if not np.any(sky > LOUDER_SKY):
        return None
    return np.where(sky > LOUDER_SKY, sky, 1.0)


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
    louder = _louder_sky(unc, bad, noise, fwhm)
    found = daofind(clean if louder is None else clean / louder, nsigma * noise, fwhm,
                    min_separation=min_separation)
    if not len(found):
        return _empty_detections()
    x, y = refine_centroids(clean, found["x_centroid"], found["y_centroid"], fwhm=fwhm)
    flagged = near_flagged(bad, x, y, fwhm)
    peak = np.asarray(found["peak"], float)
    if louder is not None:
        iy = np.clip(np.round(np.asarray(found["y_centroid"])).astype(int), 0, data.shape[0] - 1)
        ix = np.clip(np.round(np.asarray(found["x_centroid"])).astype(int), 0, data.shape[1] - 1)
        peak = peak * louder[iy, ix]
    saturated = np.zeros(len(x), bool) if saturate is None else peak >= saturate
    if mask is not None:
        saturated |= near_flagged(masks.has(mask, "SATURATED"), x, y, fwhm)
    out = Table()
    out["id"] = np.arange(1, len(x) + 1)
    out["x"], out["y"], out["peak"] = x, y, peak
    for name in ("sharpness", "roundness1", "roundness2"):
        out[name] = np.asarray(found[name], float)
    out["flagged"], out["saturated"] = flagged, saturated
    return out


